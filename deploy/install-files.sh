#!/bin/sh
# Install everything that goes beside the venv: `reconciler` on PATH, the shell completions,
# the man page, the documentation the unit's Documentation= names, and the unit itself.
#
#   install-files.sh [BUILD_DIR]      (default: build/ of this checkout)
#
# BUILD_DIR holds what `make completions` (deploy/mkcompletions.sh) generated. As root, after
# the venv is installed (deploy/README.md). Installs:
#
#   PREFIX/bin/reconciler                                  -> VENV/bin/reconciler (symlink)
#   PREFIX/share/bash-completion/completions/reconciler    bash (bash-completion loads it)
#   PREFIX/share/zsh/site-functions/_reconciler            zsh (on Debian's default fpath)
#   PREFIX/share/fish/vendor_completions.d/reconciler.fish fish
#   PREFIX/share/man/man1/reconciler.1                     `man reconciler`
#   PREFIX/share/doc/reconciler/{README.md,deploy.md,docs/*.md}
#   UNITDIR/reconciler.service                             with VENV and PREFIX filled in
#
# Environment: PREFIX (default /usr/local), VENV (default /opt/reconciler/venv), UNITDIR
# (default /etc/systemd/system), DESTDIR (a staging root prefixed to every path written;
# the symlink and the unit still name the final paths).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
build=${1:-$top/build}
prefix=${PREFIX:-/usr/local}
venv=${VENV:-/opt/reconciler/venv}
unitdir=${UNITDIR:-/etc/systemd/system}
dest=${DESTDIR:-}

for f in completions/reconciler.bash completions/_reconciler completions/reconciler.fish \
         man/reconciler.1; do
  if [ ! -f "$build/$f" ]; then
    echo "install-files.sh: $build/$f is missing: run \`make completions\` first" >&2
    exit 1
  fi
done

share=$dest$prefix/share
install -D -m 0644 "$build/completions/reconciler.bash" \
  "$share/bash-completion/completions/reconciler"
install -D -m 0644 "$build/completions/_reconciler" "$share/zsh/site-functions/_reconciler"
install -D -m 0644 "$build/completions/reconciler.fish" \
  "$share/fish/vendor_completions.d/reconciler.fish"
install -D -m 0644 "$build/man/reconciler.1" "$share/man/man1/reconciler.1"

doc=$share/doc/reconciler
install -D -m 0644 "$top/README.md" "$doc/README.md"
install -D -m 0644 "$here/README.md" "$doc/deploy.md"
for f in "$top"/docs/*.md; do
  install -D -m 0644 "$f" "$doc/docs/$(basename "$f")"
done

mkdir -p "$dest$prefix/bin"
ln -sfn "$venv/bin/reconciler" "$dest$prefix/bin/reconciler"

mkdir -p "$dest$unitdir"
sed -e "s#/opt/reconciler/venv#$venv#g" -e "s#/usr/local/share/doc/reconciler#$prefix/share/doc/reconciler#g" \
  "$here/reconciler.service" >"$dest$unitdir/reconciler.service.tmp"
chmod 0644 "$dest$unitdir/reconciler.service.tmp"
mv "$dest$unitdir/reconciler.service.tmp" "$dest$unitdir/reconciler.service"
