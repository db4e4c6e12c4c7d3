"""joule_fuzz_target: one libFuzzer target and the test that replays its seeds."""

load("@rules_cc//cc:defs.bzl", "cc_binary", "cc_library", "cc_test")

def joule_fuzz_target(name, srcs, deps = [], size = "small"):
    """Defines a fuzz target `name` with seeds in corpus/<name>/.

    Targets:
      <name>_lib   the target's LLVMFuzzerTestOneInput (alwayslink).
      <name>       the fuzzer binary: linked with libFuzzer under
                   --config=libfuzzer (scripts/fuzz.sh), else with
                   replay_main (runs the files and directories it is given).
      <name>_test  replays every seed in corpus/<name>/ (normal suite, and
                   under --config=asan in scripts/sanitize.sh).
    """
    cc_library(
        name = name + "_lib",
        srcs = srcs,
        deps = deps + [
            ":fuzz_support",
            "//third_party:absl",
        ],
        alwayslink = True,
    )
    cc_binary(
        name = name,
        deps = [":" + name + "_lib"] + select({
            ":libfuzzer": [],
            "//conditions:default": [":replay_main"],
        }),
        linkopts = select({
            ":libfuzzer": ["-fsanitize=fuzzer"],
            "//conditions:default": [],
        }),
    )
    cc_test(
        name = name + "_test",
        size = size,
        deps = [
            ":" + name + "_lib",
            ":replay_main",
        ],
        args = ["fuzz/corpus/" + name],
        data = native.glob(["corpus/" + name + "/**"]),
    )
