# shellcheck shell=bash
# Iceberg REST catalog: Apache Iceberg's REST test server (iceberg-open-api
# 1.10.1 fat jar) backed by a SQLite file in .stack/iceberg-rest (one pooled
# connection: with the default two, concurrent commits hit SQLITE_BUSY), writing
# metadata to s3://warehouse/ with S3FileIO. Started through
# java/LoopbackRESTCatalogServer.java so it listens on 127.0.0.1 only.

iceberg_rest_deps()    { echo s3; }
iceberg_rest_port()    { echo "$MOZART_ICEBERG_REST_PORT"; }
iceberg_rest_timeout() { echo 90; }
iceberg_rest_signal()  { echo TERM; }
iceberg_rest_stop_timeout() { echo 60; }

iceberg_rest_prepare() {
  ensure_rest_jar
  java_home >/dev/null
  mkdir -p "$(svc_dir iceberg-rest)"
}

# Fills the array REST_CMD with the java command line.
iceberg_rest_cmd() {
  local dir classes java
  dir="$(svc_dir iceberg-rest)"; java="$(java_home)/bin/java"
  classes="$(rest_launcher_classes)"
  REST_CMD=("$java" "-Dmozart.stack=$dir" -Xmx512m -XX:+UseSerialGC -XX:TieredStopAtLevel=1
            --enable-native-access=ALL-UNNAMED -Dorg.slf4j.simpleLogger.showDateTime=true
            "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSS")
  if [[ -n "$classes" ]]; then
    REST_CMD+=(-cp "$classes:$(rest_jar)" org.apache.iceberg.rest.LoopbackRESTCatalogServer)
  else
    info "iceberg-rest: no javac in $(java_home); falling back to java -jar (binds all interfaces)"
    REST_CMD+=(-Dorg.slf4j.simpleLogger.log.org.apache.iceberg.rest.RESTCatalogServer=warn
               -jar "$(rest_jar)")
  fi
}

iceberg_rest_start() {
  local dir REST_CMD
  dir="$(svc_dir iceberg-rest)"
  iceberg_rest_cmd
  CATALOG_WAREHOUSE=s3://warehouse/ \
  CATALOG_IO__IMPL=org.apache.iceberg.aws.s3.S3FileIO \
  CATALOG_S3_ENDPOINT="http://$BIND_HOST:$MOZART_S3_PORT" \
  CATALOG_S3_PATH__STYLE__ACCESS=true \
  CATALOG_S3_ACCESS__KEY__ID="$MOZART_S3_ACCESS_KEY" \
  CATALOG_S3_SECRET__ACCESS__KEY="$MOZART_S3_SECRET_KEY" \
  CATALOG_URI="jdbc:sqlite:$dir/catalog.db?busy_timeout=30000" \
  CATALOG_CLIENTS=1 \
  CATALOG_JDBC_USER=mozart CATALOG_JDBC_PASSWORD=mozart \
  CATALOG_REST_PORT="$MOZART_ICEBERG_REST_PORT" \
  MOZART_REST_BIND_HOST="$BIND_HOST" \
  AWS_REGION="$MOZART_S3_REGION" \
  AWS_REQUEST_CHECKSUM_CALCULATION=when_required \
  AWS_RESPONSE_CHECKSUM_VALIDATION=when_required \
    spawn "$(svc_pidfile iceberg-rest)" "$(svc_log iceberg-rest)" "${REST_CMD[@]}"
}

iceberg_rest_ready() {
  [[ "$(http_code "http://$BIND_HOST:$MOZART_ICEBERG_REST_PORT/v1/config")" == 200 ]]
}

iceberg_rest_post_start() { :; }
