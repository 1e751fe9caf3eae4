// The wire protocol's constants as the server hands them to the page: every page renders
// worldboss_sdk.protocol.as_dict() as <script id="protocol" type="application/json">
// (base.html, {{ protocol|json_script:"protocol" }}). The JS keeps no copy of a close code,
// an error code or a status: a change in protocol.py reaches the pages with the next load.
//
// Shape: { version, maxFrameBytes, close: {NORMAL, UNAUTHORIZED, ...}, permanentCloseCodes: [..],
//          errors: {RATE_LIMITED, ...}, status: {LIVE, PAUSED, ...}, endedStatuses: [..] }

export function readProtocol(doc = document) {
  const el = doc.getElementById("protocol");
  // A page without it was rendered without the protocol's constants: fail loudly rather
  // than guess codes.
  if (!el) throw new Error('no <script id="protocol"> on this page: render it with the protocol constants');
  return deepFreeze(JSON.parse(el.textContent));
}

function deepFreeze(obj) {
  for (const v of Object.values(obj)) if (v && typeof v === "object") deepFreeze(v);
  return Object.freeze(obj);
}

// Whether reconnecting after this close code could help (a permanent refusal gets the
// same answer every time: bad credentials, not allowed, no such boss or shard).
export function isPermanentClose(protocol, code) {
  return protocol.permanentCloseCodes.includes(code);
}

// Whether a boss status means the fight is over (nothing will change any more).
export function isEnded(protocol, status) {
  return protocol.endedStatuses.includes(status);
}
