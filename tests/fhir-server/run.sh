#!/usr/bin/env bash
# Run the HAPI FHIR test server in the foreground. `exec`s java, so the pid that started this
# script is the JVM's. Build first with build.sh.
#   HAPI_PORT       port on 127.0.0.1 (default 8080)
#   HAPI_XMX        max heap (default 1g; use 2g for Synthea-sized data in H2 memory)
#   HAPI_DB_URL     JDBC URL (default jdbc:h2:mem:hapi;DB_CLOSE_DELAY=-1), e.g. jdbc:h2:file:/tmp/db/h2
#   HAPI_JAVA_OPTS  extra JVM options
# Arguments are passed to Spring Boot, e.g. --hapi.default-page-size=20.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
jar="$here/target/hapi-test-server.jar"
cpfile="$here/target/classpath.txt"
if [[ ! -f $jar || ! -s $cpfile ]]; then
    echo "run.sh: $jar or $cpfile missing: run $here/build.sh first" >&2
    exit 1
fi
# shellcheck disable=SC2086  # HAPI_JAVA_OPTS is a list of options
exec java \
    -Xms256m "-Xmx${HAPI_XMX:-1g}" \
    -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -XX:+ExitOnOutOfMemoryError \
    -Dfile.encoding=UTF-8 \
    ${HAPI_JAVA_OPTS:-} \
    -cp "$jar:$(cat "$cpfile")" \
    org.fhirscreen.testserver.TestServer "$@"
