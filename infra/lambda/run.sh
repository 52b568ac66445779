#!/bin/sh
# Start command of the streaming functions, run by the AWS Lambda Web Adapter (the layer's
# /opt/bootstrap wrapper, AWS_LAMBDA_EXEC_WRAPPER, execs the function's handler: this file).
# It serves one endpoint family's ASGI app under uvicorn on the adapter's port; the adapter
# turns each function URL request into an HTTP request to it and streams the response back
# (AWS_LWA_INVOKE_MODE=response_stream).
#
#   SSE_APP       the app, e.g. functions.channels:app (required)
#   AWS_LWA_PORT  the port the adapter forwards to (else PORT, else 8080: the adapter's own
#                 defaults)
#   PYTHON        the interpreter (python3)
#
# uvicorn listens only once the app's startup is done, so the adapter's readiness check can
# be a plain TCP connect. Client addresses come from the adapter's X-Forwarded-For, trusted
# from the loopback only. Access lines come from the app's own JSON logs.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
# The package holds the library at its root; a checkout holds it in lib/.
export PYTHONPATH="$root/lib:$root${PYTHONPATH:+:$PYTHONPATH}"
cd "$root"
exec "${PYTHON:-python3}" -m uvicorn "${SSE_APP:?SSE_APP names the app, e.g. functions.channels:app}" \
  --host 127.0.0.1 \
  --port "${AWS_LWA_PORT:-${PORT:-8080}}" \
  --lifespan on \
  --proxy-headers --forwarded-allow-ips 127.0.0.1 \
  --no-access-log
