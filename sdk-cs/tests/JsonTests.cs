using System.Collections.Generic;

namespace WorldBoss.Tests
{
    public static class JsonTests
    {
        public static void TestParsesEveryKind()
        {
            JsonObject o = Json.ParseObject("{\"a\": [1, -2.5, true, false, null, \"x\\n\\u00e9\"], \"b\": {\"c\": 1099511627776}}");
            var a = (List<object>)o["a"];
            Assert.Equal(1L, (long)a[0], "int");
            Assert.Equal(-2.5, (double)a[1], "double");
            Assert.Equal(true, (bool)a[2], "true");
            Assert.True(a[4] == null, "null");
            Assert.Equal("x\né", (string)a[5], "escapes");
            Assert.Equal(1099511627776L, ((JsonObject)o["b"]).GetLong("c"), "a 2^40 amount");
        }

        public static void TestRefusesWhatIsNotJson()
        {
            foreach (string text in new[] { "", "{", "{\"a\":}", "[1,]", "01", "\"open", "{} x", "nan", "{'a':1}" })
                Assert.Throws<JsonException>(() => Json.Parse(text), text);
        }

        public static void TestWritesAsPythonDumpsEnsureAscii()
        {
            var o = new JsonObject();
            o["z"] = "é\u2028\U0001F600\"\\\t\u0001\u007f";
            o["a"] = 1L;
            o["n"] = null;
            o["l"] = new List<object> { true, 2.5 };
            Assert.Equal("{\"z\":\"\\u00e9\\u2028\\ud83d\\ude00\\\"\\\\\\t\\u0001\\u007f\",\"a\":1,\"n\":null,\"l\":[true,2.5]}", Json.Write(o), "compact, key order kept");
        }

        public static void TestRoundTrip()
        {
            string text = "{\"type\":\"damage\",\"boss\":\"ragnaros\",\"seq\":3,\"amount\":70,\"breakdown\":{\"p0\":35,\"p1\":35}}";
            Assert.Equal(text, Json.Write(Json.Parse(text)), "round trip");
        }
    }
}
