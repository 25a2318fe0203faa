"""Build script: compiles ``fastdistill._C`` (C++ always, CUDA when a toolkit is found) with torch's extension tooling.

Environment knobs:
  FASTDISTILL_CUDA=0|1   CUDA sources off / on (default: on with a CUDA toolkit and a CUDA build of torch)
  TORCH_CUDA_ARCH_LIST   GPU architectures (default when no GPU is visible: "8.0;9.0+PTX")
  FASTDISTILL_DEBUG=1    -O0 -g
Install with ``pip install --no-build-isolation -e .`` so the extension is compiled against the torch you already have
and lands in the source tree (``fastdistill/_C*.so``), which is what ``python -m fastdistill`` imports from the
repository root. Objects stay under ``build/``: the next install recompiles only changed sources.
"""

import glob
import os
import shutil
import subprocess
import sys
import sysconfig

from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def log(msg: str) -> None:
    print(f"[fastdistill setup] {msg}", file=sys.stderr)


def find_cuda_home() -> str | None:
    """The real toolkit root: $CUDA_HOME / $CUDA_PATH, else asked from the nvcc on PATH (maybe a wrapper)."""
    for var in ("CUDA_HOME", "CUDA_PATH"):
        root = os.environ.get(var)
        if root and os.path.exists(os.path.join(root, "include", "cuda_runtime.h")):
            return root
        if root:
            log(f"ignoring {var}={root}: no include/cuda_runtime.h there (not a toolkit root)")
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return None
    try:  # `nvcc --dryrun` prints "#$ TOP=<toolkit>/bin/.." even through a wrapper script
        out = subprocess.run([nvcc, "--dryrun", "-c", "x.cu"], capture_output=True, text=True, timeout=60)
        for line in (out.stdout + out.stderr).splitlines():
            if "TOP=" in line:
                return os.path.realpath(line.split("TOP=", 1)[1].strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))


def build_dir() -> str:
    """One object directory per platform and interpreter under ``<repo>/build/`` (pip's editable build would use a
    fresh temporary one each time and recompile everything)."""
    return os.path.join(ROOT, "build", f"temp.{sysconfig.get_platform()}-{sys.implementation.cache_tag}")


def extensions() -> tuple[list, dict]:
    try:
        import torch  # noqa: F401
    except ImportError:
        log("torch is not importable in the build environment: building WITHOUT fastdistill._C "
            "(the torch fallback will be used). Install torch first, then `pip install --no-build-isolation -e .`.")
        return [], {}
    cuda_home = find_cuda_home()
    if cuda_home is not None:
        os.environ["CUDA_HOME"] = cuda_home  # must be set before torch.utils.cpp_extension is imported
    import torch
    from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension

    cpp_sources = sorted(glob.glob("csrc/*.cpp") + glob.glob("csrc/cpu/*.cpp"))
    cuda_sources = sorted(glob.glob("csrc/cuda/*.cu"))
    if not cpp_sources:
        log("no C++ sources under csrc/: building WITHOUT fastdistill._C")
        return [], {}
    knob = os.environ.get("FASTDISTILL_CUDA", "")
    if knob == "0":
        use_cuda, why = False, "FASTDISTILL_CUDA=0"
    elif knob == "1":
        use_cuda, why = True, "FASTDISTILL_CUDA=1"
    else:
        use_cuda = cuda_home is not None and torch.version.cuda is not None and bool(cuda_sources)
        why = f"auto: CUDA_HOME={cuda_home}, torch.version.cuda={torch.version.cuda}"
    if use_cuda and not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
        os.environ["TORCH_CUDA_ARCH_LIST"] = "8.0;9.0+PTX"
    debug = os.environ.get("FASTDISTILL_DEBUG") == "1"
    opt = ["-O0", "-g"] if debug else ["-O3"]
    cxx = opt + ["-fopenmp"]  # no -std: torch adds the standard its headers need (C++17 or C++20 by version)
    define_macros = [("WITH_CUDA", None)] if use_cuda else []
    log(f"torch {torch.__version__}; CUDA sources {'ON' if use_cuda else 'OFF'} ({why}); "
        f"arch list {os.environ.get('TORCH_CUDA_ARCH_LIST', '-') if use_cuda else '-'}; "
        f"{len(cpp_sources)} C++ + {len(cuda_sources) if use_cuda else 0} CUDA sources; "
        f"{'debug' if debug else 'release'}; objects in {build_dir()}")
    if use_cuda:
        ext = CUDAExtension(
            "fastdistill._C",
            cpp_sources + cuda_sources,
            include_dirs=[os.path.join(ROOT, "csrc")],
            define_macros=define_macros,
            extra_compile_args={"cxx": cxx, "nvcc": opt + ["--use_fast_math", "-lineinfo"]},
            extra_link_args=["-fopenmp"],
        )
    else:
        ext = CppExtension(
            "fastdistill._C",
            cpp_sources,
            include_dirs=[os.path.join(ROOT, "csrc")],
            define_macros=define_macros,
            extra_compile_args={"cxx": cxx},
            extra_link_args=["-fopenmp"],
        )

    class PersistentBuildExtension(BuildExtension):
        """torch's ninja build in ``build_dir()``, so ninja reuses the objects of earlier installs."""

        def finalize_options(self) -> None:
            super().finalize_options()
            self.build_temp = build_dir()

    return [ext], {"build_ext": PersistentBuildExtension.with_options(no_python_abi_suffix=False)}


ext_modules, cmdclass = extensions()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
