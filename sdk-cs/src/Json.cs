// A small JSON reader and writer (no dependency outside the base class library).
//
// Reading gives Dictionary<string, object> (insertion order kept), List<object>, string, long
// (whole numbers that fit), double, bool and null. Writing takes the same types (and any
// IDictionary<string, long>, int, long, double) and writes compact JSON the way Python's
// json.dumps(separators=(",", ":"), ensure_ascii=True) does: characters outside printable
// ASCII as lowercase \uXXXX escapes, so a signed payload is byte for byte the platform's.
using System;
using System.Collections;
using System.Collections.Generic;
using System.Globalization;
using System.Text;

namespace WorldBoss
{
    /// <summary>The text is not JSON.</summary>
    public sealed class JsonException : FormatException
    {
        public JsonException(string message) : base(message) { }
    }

    /// <summary>An object whose keys keep the order they were added in (JSON writers care).</summary>
    public sealed class JsonObject : Dictionary<string, object>
    {
        private readonly List<string> _order = new List<string>();

        public new object this[string key]
        {
            get { return base[key]; }
            set
            {
                if (!ContainsKey(key)) _order.Add(key);
                base[key] = value;
            }
        }

        public new void Add(string key, object value)
        {
            base.Add(key, value);
            _order.Add(key);
        }

        public new bool Remove(string key)
        {
            _order.Remove(key);
            return base.Remove(key);
        }

        public IEnumerable<string> OrderedKeys { get { return _order; } }

        /// <summary>The value at <paramref name="key"/>, or null when it is missing.</summary>
        public object Get(string key)
        {
            object value;
            return TryGetValue(key, out value) ? value : null;
        }

        public string GetString(string key)
        {
            return Get(key) as string;
        }

        /// <summary>A whole number at <paramref name="key"/>, or <paramref name="fallback"/>.</summary>
        public long GetLong(string key, long fallback = 0)
        {
            object value = Get(key);
            if (value is long) return (long)value;
            if (value is double) return (long)(double)value;
            return fallback;
        }

        public bool IsLong(string key)
        {
            return Get(key) is long;
        }
    }

    public static class Json
    {
        // --- reading ---------------------------------------------------------------------

        public static object Parse(string text)
        {
            if (text == null) throw new ArgumentNullException("text");
            var reader = new Reader(text);
            reader.SkipSpace();
            object value = reader.ReadValue(0);
            reader.SkipSpace();
            if (reader.Pos != text.Length) throw new JsonException("trailing characters at " + reader.Pos);
            return value;
        }

        /// <summary>Parse a JSON object (JsonException for anything else).</summary>
        public static JsonObject ParseObject(string text)
        {
            var obj = Parse(text) as JsonObject;
            if (obj == null) throw new JsonException("not a JSON object");
            return obj;
        }

        private sealed class Reader
        {
            private const int MaxDepth = 64;
            private readonly string _s;
            public int Pos;

            public Reader(string s)
            {
                _s = s;
            }

            public void SkipSpace()
            {
                while (Pos < _s.Length && (_s[Pos] == ' ' || _s[Pos] == '\t' || _s[Pos] == '\n' || _s[Pos] == '\r')) Pos++;
            }

            private JsonException Error(string what)
            {
                return new JsonException(what + " at " + Pos);
            }

            public object ReadValue(int depth)
            {
                if (depth > MaxDepth) throw Error("nested too deep");
                if (Pos >= _s.Length) throw Error("unexpected end");
                char c = _s[Pos];
                switch (c)
                {
                    case '{': return ReadObject(depth);
                    case '[': return ReadArray(depth);
                    case '"': return ReadString();
                    case 't': Expect("true"); return true;
                    case 'f': Expect("false"); return false;
                    case 'n': Expect("null"); return null;
                    default:
                        if (c == '-' || (c >= '0' && c <= '9')) return ReadNumber();
                        throw Error("unexpected '" + c + "'");
                }
            }

            private void Expect(string word)
            {
                if (string.CompareOrdinal(_s, Pos, word, 0, word.Length) != 0) throw Error("expected " + word);
                Pos += word.Length;
            }

            private JsonObject ReadObject(int depth)
            {
                var obj = new JsonObject();
                Pos++;
                SkipSpace();
                if (Pos < _s.Length && _s[Pos] == '}')
                {
                    Pos++;
                    return obj;
                }
                while (true)
                {
                    SkipSpace();
                    if (Pos >= _s.Length || _s[Pos] != '"') throw Error("expected a key");
                    string key = ReadString();
                    SkipSpace();
                    if (Pos >= _s.Length || _s[Pos] != ':') throw Error("expected ':'");
                    Pos++;
                    SkipSpace();
                    obj[key] = ReadValue(depth + 1); // a repeated key: the last one wins
                    SkipSpace();
                    if (Pos >= _s.Length) throw Error("unexpected end");
                    if (_s[Pos] == ',') { Pos++; continue; }
                    if (_s[Pos] == '}') { Pos++; return obj; }
                    throw Error("expected ',' or '}'");
                }
            }

            private List<object> ReadArray(int depth)
            {
                var list = new List<object>();
                Pos++;
                SkipSpace();
                if (Pos < _s.Length && _s[Pos] == ']')
                {
                    Pos++;
                    return list;
                }
                while (true)
                {
                    SkipSpace();
                    list.Add(ReadValue(depth + 1));
                    SkipSpace();
                    if (Pos >= _s.Length) throw Error("unexpected end");
                    if (_s[Pos] == ',') { Pos++; continue; }
                    if (_s[Pos] == ']') { Pos++; return list; }
                    throw Error("expected ',' or ']'");
                }
            }

            private string ReadString()
            {
                Pos++; // the opening quote
                var sb = new StringBuilder();
                while (true)
                {
                    if (Pos >= _s.Length) throw Error("unterminated string");
                    char c = _s[Pos++];
                    if (c == '"') return sb.ToString();
                    if (c < ' ') throw Error("control character in a string");
                    if (c != '\\')
                    {
                        sb.Append(c);
                        continue;
                    }
                    if (Pos >= _s.Length) throw Error("unterminated escape");
                    char e = _s[Pos++];
                    switch (e)
                    {
                        case '"': sb.Append('"'); break;
                        case '\\': sb.Append('\\'); break;
                        case '/': sb.Append('/'); break;
                        case 'b': sb.Append('\b'); break;
                        case 'f': sb.Append('\f'); break;
                        case 'n': sb.Append('\n'); break;
                        case 'r': sb.Append('\r'); break;
                        case 't': sb.Append('\t'); break;
                        case 'u':
                            if (Pos + 4 > _s.Length) throw Error("short \\u escape");
                            int code;
                            if (!int.TryParse(_s.Substring(Pos, 4), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out code))
                                throw Error("bad \\u escape");
                            sb.Append((char)code);
                            Pos += 4;
                            break;
                        default: throw Error("bad escape");
                    }
                }
            }

            private object ReadNumber()
            {
                int start = Pos;
                if (_s[Pos] == '-') Pos++;
                int digits = Pos;
                while (Pos < _s.Length && _s[Pos] >= '0' && _s[Pos] <= '9') Pos++;
                if (Pos == digits) throw Error("expected a digit");
                if (_s[digits] == '0' && Pos - digits > 1) throw Error("leading zero");
                bool whole = true;
                if (Pos < _s.Length && _s[Pos] == '.')
                {
                    whole = false;
                    Pos++;
                    int frac = Pos;
                    while (Pos < _s.Length && _s[Pos] >= '0' && _s[Pos] <= '9') Pos++;
                    if (Pos == frac) throw Error("expected a digit");
                }
                if (Pos < _s.Length && (_s[Pos] == 'e' || _s[Pos] == 'E'))
                {
                    whole = false;
                    Pos++;
                    if (Pos < _s.Length && (_s[Pos] == '+' || _s[Pos] == '-')) Pos++;
                    int exp = Pos;
                    while (Pos < _s.Length && _s[Pos] >= '0' && _s[Pos] <= '9') Pos++;
                    if (Pos == exp) throw Error("expected a digit");
                }
                string text = _s.Substring(start, Pos - start);
                long asLong;
                if (whole && long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out asLong)) return asLong;
                return double.Parse(text, NumberStyles.Float, CultureInfo.InvariantCulture);
            }
        }

        // --- writing ---------------------------------------------------------------------

        public static string Write(object value)
        {
            var sb = new StringBuilder();
            WriteValue(sb, value);
            return sb.ToString();
        }

        private static void WriteValue(StringBuilder sb, object value)
        {
            if (value == null) sb.Append("null");
            else if (value is string) WriteString(sb, (string)value);
            else if (value is bool) sb.Append((bool)value ? "true" : "false");
            else if (value is long) sb.Append(((long)value).ToString(CultureInfo.InvariantCulture));
            else if (value is int) sb.Append(((int)value).ToString(CultureInfo.InvariantCulture));
            else if (value is double) WriteDouble(sb, (double)value);
            else if (value is JsonObject)
            {
                var obj = (JsonObject)value;
                var pairs = new List<KeyValuePair<string, object>>();
                foreach (string key in obj.OrderedKeys) pairs.Add(new KeyValuePair<string, object>(key, obj[key]));
                WritePairs(sb, pairs);
            }
            else if (value is IDictionary<string, long>)
            {
                var pairs = new List<KeyValuePair<string, object>>();
                foreach (var kv in (IDictionary<string, long>)value) pairs.Add(new KeyValuePair<string, object>(kv.Key, kv.Value));
                WritePairs(sb, pairs);
            }
            else if (value is IDictionary<string, object>)
            {
                var pairs = new List<KeyValuePair<string, object>>((IDictionary<string, object>)value);
                WritePairs(sb, pairs);
            }
            else if (value is IEnumerable)
            {
                sb.Append('[');
                bool first = true;
                foreach (object item in (IEnumerable)value)
                {
                    if (!first) sb.Append(',');
                    first = false;
                    WriteValue(sb, item);
                }
                sb.Append(']');
            }
            else throw new ArgumentException("cannot write " + value.GetType().Name + " as JSON");
        }

        private static void WritePairs(StringBuilder sb, List<KeyValuePair<string, object>> pairs)
        {
            sb.Append('{');
            for (int i = 0; i < pairs.Count; i++)
            {
                if (i > 0) sb.Append(',');
                WriteString(sb, pairs[i].Key);
                sb.Append(':');
                WriteValue(sb, pairs[i].Value);
            }
            sb.Append('}');
        }

        private static void WriteDouble(StringBuilder sb, double d)
        {
            if (double.IsNaN(d) || double.IsInfinity(d)) throw new ArgumentException("JSON has no NaN or infinity");
            if (d == Math.Floor(d) && Math.Abs(d) < 9007199254740992.0) sb.Append(((long)d).ToString(CultureInfo.InvariantCulture));
            else sb.Append(d.ToString("R", CultureInfo.InvariantCulture));
        }

        private static void WriteString(StringBuilder sb, string s)
        {
            sb.Append('"');
            foreach (char c in s)
            {
                switch (c)
                {
                    case '"': sb.Append("\\\""); break;
                    case '\\': sb.Append("\\\\"); break;
                    case '\n': sb.Append("\\n"); break;
                    case '\r': sb.Append("\\r"); break;
                    case '\t': sb.Append("\\t"); break;
                    case '\b': sb.Append("\\b"); break;
                    case '\f': sb.Append("\\f"); break;
                    default:
                        if (c < ' ' || c > '~') sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                        else sb.Append(c);
                        break;
                }
            }
            sb.Append('"');
        }
    }
}
