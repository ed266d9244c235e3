# Sourced by build-wheel.sh and test.sh: find_python V prints a CPython V (e.g. 3.12) that runs,
# looking for pythonV on PATH, in /usr/bin and /usr/local/bin, then in pyenv's versions; prints
# nothing (status 1) when there is none.
find_python() {
    local v="$1" cand root
    root="$(pyenv root 2>/dev/null || echo /nonexistent)"
    for cand in "python$v" "/usr/bin/python$v" "/usr/local/bin/python$v" "$root"/versions/"$v".*/bin/"python$v"; do
        if "$cand" -c 'import sys' >/dev/null 2>&1; then
            echo "$cand"
            return 0
        fi
    done
    return 1
}
# The CPython versions wheels are built and tested for (pyproject.toml [tool.cibuildwheel] build).
WHEEL_PYTHON_VERSIONS="3.10 3.11 3.12 3.13 3.14"
# package_version PYTHON: uwsgipy.__version__ (the one version source), read from
# uwsgipy/__init__.py without importing the package (no C core needed).
package_version() {
    "$1" -c 'import ast
for n in ast.parse(open("uwsgipy/__init__.py").read()).body:
    if isinstance(n, ast.Assign) and n.targets[0].id == "__version__":
        print(n.value.value)'
}
