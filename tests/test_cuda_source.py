"""The CUDA C of the CuPy kernels, checked without a GPU.

1. Each kernel's C, interpreted statement by statement (tests/fakecupy.py),
   gives what its kernels.py math gives on NumPy.
2. ``nvcc`` (when on the PATH) compiles every kernel for the device and, as
   ``__host__ __device__`` code, runs it on the CPU: the compiled C matches
   the NumPy results in float and double.
"""
import inspect
import math
import os
import shutil
import subprocess
import types

import numpy as np
import pytest
import array_api_strict as strict

from xpnet.backends import cuda_source

import fakecupy

SPECS = cuda_source.all_specs()
SCALARS = {"alpha": 0.01, "lr": 0.1, "momentum": 0.9, "weight_decay": 0.01, "rho": 0.9, "eps": 1e-8,
           "beta1": 0.9, "beta2": 0.999, "bias1": 0.19, "bias2": 0.002, "count": 8.0}
N = 24


def numpy_math():
    """NumPy plus an erf: the namespace kernels.py runs on for the references."""
    return types.SimpleNamespace(exp=np.exp, tanh=np.tanh, sqrt=np.sqrt, log=np.log, abs=np.abs, where=np.where,
                                 erf=np.vectorize(math.erf, otypes=[np.float64]))


def sample(name, rng):
    """Values in each parameter's domain: positive where the math needs it (√v, log Σ, ...)."""
    if name in SCALARS:
        return np.full(N, SCALARS[name])
    if name in ("v", "square_avg"):
        return rng.uniform(0.0, 2.0, N)
    if name == "row_sum":
        return rng.uniform(1.0, 5.0, N)
    if name == "onehot":
        return rng.integers(0, 2, N).astype(np.float64)
    z = rng.uniform(-3.0, 3.0, N)
    return np.where(np.abs(z) < 0.01, 0.5, z)  # away from ReLU's kink


def reference(spec, values, dtype):
    """The spec's math on NumPy in ``dtype`` (scalars as Python floats, as kernels.py is written)."""
    args = {k: (float(v[0]) if k in SCALARS else v.astype(dtype)) for k, v in values.items()}
    out = spec.math(numpy_math(), **args)
    return {k: np.asarray(out[k], dtype=np.float64) for k in spec.outputs}


def spec_values(spec, seed):
    """Samples for every parameter of the traced function (the C reads only ``spec.inputs`` of them)."""
    rng = np.random.default_rng(seed)
    return {name: sample(name, rng) for name in list(inspect.signature(spec.math).parameters)[1:]}


def test_every_kernel_reads_and_writes_what_it_declares():
    names = [spec.name for spec in SPECS]
    assert len(names) == len(set(names)) == 34  # 32 for Dense nets, optimisers and losses; 2 for BatchNorm
    adam = cuda_source.adam(decay=True)
    assert adam.inputs == ("grad", "lr", "beta1", "beta2", "eps", "bias1", "bias2", "weight_decay")
    assert adam.outputs == ("param", "m", "v") and adam.operation.splitlines()[-3:] == ["param = t17;", "m = t5;",
                                                                                        "v = t10;"]
    assert "weight_decay" not in cuda_source.adam(decay=False).inputs
    assert cuda_source.activation_backward("tanh").inputs == ("grad_a", "a")  # tanh' needs only a


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_interpreted_source_matches_kernels_math_on_numpy(spec, dtype):
    fake = fakecupy.FakeCupy()
    kernel = fakecupy.ElementwiseKernel(fake, spec.in_params, spec.out_params, spec.operation, spec.name)
    values = spec_values(spec, seed=7)
    device, xdtype = fake.device(), getattr(strict, dtype)
    args = []
    for name in spec.inputs:
        if name in SCALARS:
            args.append(np.dtype(dtype).type(SCALARS[name]))
        else:
            args.append(fake.module.ascontiguousarray(strict.asarray(values[name], dtype=xdtype, device=device,
                                                                     copy=True)))
    outs = [strict.asarray(values[name], dtype=xdtype, device=device, copy=True) for name in spec.outputs]
    kernel(*args, *outs)
    expected = reference(spec, values, dtype)
    tol = dict(rtol=2e-6, atol=2e-6) if dtype == "float32" else dict(rtol=1e-13, atol=1e-14)
    for name, out in zip(spec.outputs, outs):
        assert out.dtype == xdtype
        np.testing.assert_allclose(np.from_dlpack(out), expected[name], **tol, err_msg=f"{spec.name}: {name}")


def test_the_fakes_float32_erf_is_as_accurate_as_cudas_erff():
    """CUDA documents erff within 2 ulp: the fake's float32 kernels must be no less accurate than the GPU's."""
    z = np.linspace(-8.0, 8.0, 3201).astype(np.float32)
    got = np.from_dlpack(fakecupy.cuda_erf(strict.asarray(z)))
    exact = np.vectorize(math.erf)(z.astype(np.float64))
    ulp = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    assert got.dtype == np.float32 and np.max(np.abs(got - exact) / ulp) <= 2.0


@pytest.mark.parametrize("spec", [s for s in SPECS if "gelu" in s.name and "tanh" not in s.name and "z" in s.inputs],
                         ids=lambda s: s.name)
def test_float32_gelu_kernels_hold_the_tolerance_out_to_8(spec):
    fake = fakecupy.FakeCupy()
    kernel = fakecupy.ElementwiseKernel(fake, spec.in_params, spec.out_params, spec.operation, spec.name)
    values = spec_values(spec, seed=3)
    values["z"] = np.linspace(-8.0, 8.0, N)
    device = fake.device()
    args = [np.float32(SCALARS[name]) if name in SCALARS else
            fake.module.ascontiguousarray(strict.asarray(values[name], dtype=strict.float32, device=device))
            for name in spec.inputs]
    outs = kernel(*args)
    expected = reference(spec, values, "float64")
    for name, out in zip(spec.outputs, outs if isinstance(outs, tuple) else (outs,)):
        np.testing.assert_allclose(np.from_dlpack(out), expected[name], rtol=2e-6, atol=2e-6, err_msg=name)


def test_tracing_rejects_python_branches_and_non_numbers():
    with pytest.raises(TypeError, match="xp.where"):
        cuda_source.elementwise("bad", lambda xp, z, a: {"a": z if z > 0 else -z}, ["z"], ["a"])
    with pytest.raises(TypeError, match="comparison"):
        cuda_source.elementwise("bad", lambda xp, z, a: {"a": z > 0}, ["z"], ["a"])
    with pytest.raises(ValueError, match="expected"):
        cuda_source.elementwise("bad", lambda xp, z, a: {"b": z}, ["z"], ["a"])
    with pytest.raises(TypeError, match="expected a number"):
        cuda_source.elementwise("bad", lambda xp, z, a: {"a": z + "1"}, ["z"], ["a"])


# ---- nvcc: compile for the device, run the same functions on the host -----------------------

def harness(specs, samples):
    """One .cu file: each operation as a __host__ __device__ function, a __global__ kernel calling it
    (instantiated for float and double, so the device compiler builds it), and a host main that prints
    every output for the sample inputs."""
    lines = ["#include <cstdio>", "#include <cmath>", "using namespace std;"]
    for spec in specs:
        params = [f"const T {p}" for p in spec.inputs] + [f"T &{p}" for p in spec.outputs]
        lines.append(f"template <typename T> __host__ __device__ inline void {spec.name}({', '.join(params)}) {{")
        lines += [f"  {line}" for line in spec.operation.splitlines()] + ["}"]
        pointers = [f"const T *{p}_" for p in spec.inputs] + [f"T *{p}_" for p in spec.outputs]
        call = ", ".join(f"{p}_[i]" for p in (*spec.inputs, *spec.outputs))
        lines.append(f"template <typename T> __global__ void {spec.name}_kernel({', '.join(pointers)}, int n) {{"
                     f" int i = blockIdx.x * blockDim.x + threadIdx.x; if (i < n) {spec.name}<T>({call}); }}")
        for ctype in ("float", "double"):
            types_ = ", ".join([f"const {ctype}*"] * len(spec.inputs) + [f"{ctype}*"] * len(spec.outputs) + ["int"])
            lines.append(f"template __global__ void {spec.name}_kernel<{ctype}>({types_});")
    lines.append("template <typename T> void show(const char *kernel, const char *type, const char *name, "
                 "const T *out) { for (int i = 0; i < %d; i++) printf(\"%%s %%s %%s %%d %%.17g\\n\", kernel, type, "
                 "name, i, (double)out[i]); }" % N)
    lines.append("int main() {")
    for spec, values in zip(specs, samples):
        for ctype in ("float", "double"):
            lines.append("  {")
            for name in (*spec.inputs, *spec.outputs):
                data = ", ".join(repr(float(v)) for v in values[name])
                lines.append(f"    {ctype} {name}[{N}] = {{{data}}};")
            call = ", ".join(f"{p}[i]" for p in (*spec.inputs, *spec.outputs))
            lines.append(f"    for (int i = 0; i < {N}; i++) {spec.name}<{ctype}>({call});")
            for name in spec.outputs:
                lines.append(f'    show("{spec.name}", "{ctype}", "{name}", {name});')
            lines.append("  }")
    lines += ["  return 0;", "}"]
    return "\n".join(lines) + "\n"


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not on the PATH")
def test_nvcc_compiles_every_kernel_and_the_host_build_matches_numpy(tmp_path):
    samples = [spec_values(spec, seed=i) for i, spec in enumerate(SPECS)]
    source = tmp_path / "xpnet_kernels.cu"
    source.write_text(harness(SPECS, samples))
    program = tmp_path / "xpnet_kernels"
    # -O0: the host build of this long main is what takes nvcc time; device code is optimised regardless.
    build = subprocess.run(["nvcc", "-O0", "-o", str(program), str(source)], capture_output=True, text=True,
                           timeout=300, env={**os.environ, "TMPDIR": str(tmp_path)})
    assert build.returncode == 0, build.stderr[-4000:]
    run = subprocess.run([str(program)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    got = {}
    for line in run.stdout.splitlines():
        kernel, ctype, name, index, value = line.split()
        got[kernel, ctype, name, int(index)] = float(value)
    assert len(got) == 2 * N * sum(len(spec.outputs) for spec in SPECS)
    for spec, values in zip(SPECS, samples):
        for ctype, dtype, tol in (("float", "float32", dict(rtol=2e-6, atol=2e-6)),
                                  ("double", "float64", dict(rtol=1e-13, atol=1e-14))):
            expected = reference(spec, values, dtype)
            for name in spec.outputs:
                compiled = np.array([got[spec.name, ctype, name, i] for i in range(N)])
                np.testing.assert_allclose(compiled, expected[name], **tol, err_msg=f"{spec.name} {ctype} {name}")
