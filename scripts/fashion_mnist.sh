#!/usr/bin/env sh
# Fashion-MNIST's four IDX files (Debian's dataset-fashion-mnist, 30 MB, offline from the
# distribution's mirror) in /usr/share/datasets/fashion-mnist, where dataset=fashion_mnist finds them.
# Exit 0 when they are there (or were installed), 1 with one line saying why not and what to do.
set -u
DIR=/usr/share/datasets/fashion-mnist
present() { [ -f "$DIR/train-images-idx3-ubyte.gz" ] && [ -f "$DIR/t10k-labels-idx1-ubyte.gz" ]; }
if present; then echo "fashion-mnist: present in $DIR"; exit 0; fi
ELSEWHERE="run 'kdrun train dataset=fashion_mnist dataset.download=true' where the internet is reachable, or set dataset.root to a folder with the four IDX files"
if ! command -v apt-get >/dev/null 2>&1; then
  echo "fashion-mnist: no apt-get on this machine; $ELSEWHERE"; exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "fashion-mnist: apt-get needs root; as root: apt-get install dataset-fashion-mnist (or $ELSEWHERE)"; exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
  || { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1; }
if present; then echo "fashion-mnist: installed in $DIR"; exit 0; fi
echo "fashion-mnist: 'apt-get install dataset-fashion-mnist' failed (no such package or no mirror reachable); $ELSEWHERE"
exit 1
