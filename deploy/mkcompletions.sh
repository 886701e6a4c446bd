#!/bin/sh
# Generate the shell completions and the man page of `reconciler` from its real parser.
#
#   mkcompletions.sh [BUILD_DIR]          (default: build)
#
# Writes BUILD_DIR/completions/reconciler.bash, _reconciler (zsh), reconciler.fish, and
# BUILD_DIR/man/reconciler.1, which deploy/install-files.sh installs. Build time only: shtab
# and argparse-manpage (pyproject's `dist` extra) read reconciler.cli.main.build_parser; the
# installed CLI never imports them. Environment: PYTHON (default .venv/bin/python, a Python
# that imports reconciler, shtab and argparse_manpage).
set -eu

build=${1:-build}
python=${PYTHON:-.venv/bin/python}
parser=reconciler.cli.main.build_parser
version=$("$python" -c 'import reconciler; print(reconciler.__version__)')

mkdir -p "$build/completions" "$build/man"
"$python" -m shtab --error-unimportable --shell=bash --prog=reconciler "$parser" \
  >"$build/completions/reconciler.bash"
"$python" -m shtab --error-unimportable --shell=zsh --prog=reconciler "$parser" \
  >"$build/completions/_reconciler"
"$python" -m shtab --error-unimportable --shell=fish --prog=reconciler "$parser" \
  >"$build/completions/reconciler.fish"
"$python" -c "import sys; from argparse_manpage.cli import main; sys.exit(main())" \
  --module reconciler.cli.main --function build_parser \
  --prog reconciler --version "$version" --project-name reconciler \
  --description "converge runc containers to the YAML manifests in a directory" \
  --manual-title "reconciler manual" --output "$build/man/reconciler.1"
