// A tiny test runner: every public static void method named Test* of the listed classes runs;
// a thrown exception fails it. `mono bin/WorldBoss.Tests.exe <repository root>`; exit 1 on a failure.
using System;
using System.Collections.Generic;
using System.Reflection;

namespace WorldBoss.Tests
{
    public sealed class AssertionFailed : Exception
    {
        public AssertionFailed(string message) : base(message) { }
    }

    public static class Assert
    {
        public static void True(bool condition, string what)
        {
            if (!condition) throw new AssertionFailed(what);
        }

        public static void Equal<T>(T expected, T actual, string what = "")
        {
            if (!EqualityComparer<T>.Default.Equals(expected, actual))
                throw new AssertionFailed(what + ": expected <" + expected + ">, got <" + actual + ">");
        }

        public static TException Throws<TException>(Action action, string what = "") where TException : Exception
        {
            try
            {
                action();
            }
            catch (TException err)
            {
                return err;
            }
            throw new AssertionFailed(what + ": no " + typeof(TException).Name + " thrown");
        }
    }

    public static class Runner
    {
        public static string Root = "..";

        public static int Main(string[] args)
        {
            if (args.Length > 0) Root = args[0];
            int passed = 0, failed = 0;
            foreach (Type type in new[] { typeof(JsonTests), typeof(VectorTests), typeof(ProtocolTests), typeof(BufferTests), typeof(ClientTests) })
            {
                foreach (MethodInfo method in type.GetMethods(BindingFlags.Public | BindingFlags.Static))
                {
                    if (!method.Name.StartsWith("Test", StringComparison.Ordinal)) continue;
                    string name = type.Name + "." + method.Name;
                    try
                    {
                        method.Invoke(null, null);
                        passed++;
                        Console.WriteLine("PASS " + name);
                    }
                    catch (TargetInvocationException err)
                    {
                        failed++;
                        Console.WriteLine("FAIL " + name + ": " + err.InnerException);
                    }
                }
            }
            Console.WriteLine(passed + " passed, " + failed + " failed");
            return failed == 0 && passed > 0 ? 0 : 1;
        }
    }
}
