#!/usr/bin/env bash
# The default dataset, Fashion-MNIST, from Debian's package when we are root with apt;
# otherwise print what to do (the fetch stage still looks at data.path and downloads when online).
set -u
dir=/usr/share/datasets/fashion-mnist
[ -f "$dir/train-images-idx3-ubyte.gz" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian package dataset-fashion-mnist into $dir"
  apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && apt-get install -y -q dataset-fashion-mnist >/dev/null; } \
    || echo "apt-get could not install dataset-fashion-mnist; the fetch stage will try to download it"
else
  cat <<MSG
Fashion-MNIST is not installed at $dir. Either:
  sudo apt-get install dataset-fashion-mnist        # Debian / Ubuntu
or put train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz
and t10k-labels-idx1-ubyte.gz in a directory and set data.path to it in params.yaml.
Otherwise the fetch stage downloads them from the canonical URL (internet needed).
MSG
fi
