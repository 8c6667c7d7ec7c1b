"""Where numba's first compile of the fused step goes: one line per compiled function, nested as numba
compiles callees while typing their callers, with the pipeline passes of the variant's ``train``.

Run it in a fresh process with an empty cache (README, "Cold start")::

    NUMBA_CACHE_DIR=$(mktemp -d) python benchmarks/compile_profile.py [--gradient finite_difference]
"""
import argparse
import time


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gradient", choices=("backprop", "finite_difference"), default="backprop",
                        help="the step's gradient, so its variant (default: backprop)")
    gradient = parser.parse_args().gradient
    from numba.core import event

    compiled, started = [], []

    class Recorder(event.Listener):
        def on_start(self, ev):
            started.append(time.perf_counter())

        def on_end(self, ev):
            fn = getattr(ev.data["dispatcher"], "py_func", None)
            compiled.append((len(started) - 1, time.perf_counter() - started.pop(), getattr(fn, "__qualname__", "?")))

    event.register("numba:compile", Recorder())
    begin = time.perf_counter()
    import numpy as np

    import xpnet as xn
    from xpnet.backends import numba_mlp

    imported = time.perf_counter()
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((32, 2)), rng.integers(0, 2, 32)  # the cold-start benchmark's network and batch
    step = xn.MLP([2, 16, 16, 2], activation="tanh", seed=0, backend="numba").compile("softmax_ce",
                                                                                      xn.optim.SGD(lr=0.1),
                                                                                      gradient=gradient)
    built = time.perf_counter()
    step.notices = False
    step(X, y)
    done = time.perf_counter()
    print(f"import {imported - begin:.2f} s, build {built - imported:.2f} s, first step {done - built:.2f} s, "
          f"{len(compiled)} functions compiled (0 when numba's cache had them)")
    for depth, seconds, name in compiled:
        print(f"{'  ' * depth}{seconds:6.2f} s  {name}")
    for variant in numba_mlp._variants.values():
        for metadata in (overload.metadata for overload in variant.train.overloads.values()):
            if not metadata:  # loaded from the cache: no passes ran
                continue
            passes = metadata["pipeline_times"]["nopython"]
            print(f"train's passes (s), llvm lock {metadata['timers']['llvm_lock']:.2f} s:")
            for seconds, name in sorted(((v.run, k) for k, v in passes.items()), reverse=True)[:6]:
                print(f"  {seconds:6.2f}  {name}")


if __name__ == "__main__":
    main()
