#!/usr/bin/env bash
# Entrypoint of the medimg image.
#   lab            JupyterLab on 0.0.0.0:8888 inside the container (publish it on 127.0.0.1 only), auth required
#   medimg ARGS    run the medimg CLI (scheduled training: `medimg fit --config ...`)
#   anything else  exec'd as given
# JupyterLab refuses to start without a token or a password: set JUPYTER_TOKEN (or JUPYTER_PASSWORD_HASH,
# an argon2 hash from `jupyter server password`), or set MEDIMG_GENERATE_TOKEN=1 to have one generated and
# printed once to the container log.
set -euo pipefail

cmd="${1:-lab}"
if [[ "$cmd" == "lab" ]]; then
    shift || true
    if [[ -z "${JUPYTER_TOKEN:-}" && -z "${JUPYTER_PASSWORD_HASH:-}" ]]; then
        if [[ "${MEDIMG_GENERATE_TOKEN:-0}" == "1" ]]; then
            JUPYTER_TOKEN="$(python -c 'import secrets; print(secrets.token_hex(24))')"
            export JUPYTER_TOKEN
            echo "medimg: generated Jupyter token: ${JUPYTER_TOKEN}" >&2
        else
            echo "medimg: refusing to start JupyterLab without authentication: set JUPYTER_TOKEN or" \
                "JUPYTER_PASSWORD_HASH (or MEDIMG_GENERATE_TOKEN=1)" >&2
            exit 64
        fi
    fi
    args=(--ip=0.0.0.0 --port="${JUPYTER_PORT:-8888}" --no-browser
          --ServerApp.allow_remote_access=True --ServerApp.root_dir=/workspace)
    if [[ -n "${JUPYTER_PASSWORD_HASH:-}" ]]; then
        args+=(--PasswordIdentityProvider.hashed_password="${JUPYTER_PASSWORD_HASH}")
    fi
    exec jupyter lab "${args[@]}" "$@"
fi
exec "$@"
