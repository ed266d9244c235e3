"""Build the C core (uwsgipy._core) from csrc/.

The pure-C parsers (upy_http.c, upy_uwsgi.c) and the CPython glue are
compiled into one extension; project metadata lives in pyproject.toml.
"""
import glob
import os
import sys

from setuptools import Extension, setup

CFLAGS = ["-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter",
          "-Wno-missing-field-initializers", "-fvisibility=hidden",
          "-D_GNU_SOURCE"]
if os.environ.get("UWSGIPY_DEBUG"):
    CFLAGS += ["-O0", "-g", "-UNDEBUG"]
else:
    CFLAGS += ["-O2"]

if os.environ.get("UWSGIPY_FORCE_POLL"):
    # The portable poll(2) loop instead of epoll: how the tests cover the
    # fallback that non-Linux platforms use.
    CFLAGS.append("-DUPY_FORCE_POLL")
if os.environ.get("UWSGIPY_PORTABLE"):
    # All of what non-Linux platforms run, built here for the tests: poll(2),
    # file bodies by pread(2)+send(2) instead of sendfile(2), no openat2(2).
    CFLAGS.append("-DUPY_PORTABLE")

sources = sorted(glob.glob(os.path.join("csrc", "*.c")))

setup(
    ext_modules=[
        Extension(
            "uwsgipy._core",
            sources=sources,
            include_dirs=["csrc"],
            extra_compile_args=CFLAGS if sys.platform != "win32" else [],
            depends=glob.glob(os.path.join("csrc", "*.h")),
        )
    ],
)
