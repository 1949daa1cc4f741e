#!/usr/bin/env bash
# Build the HAPI FHIR test server: compile, package target/hapi-test-server.jar and write the
# runtime classpath to target/classpath.txt. Does nothing when classpath.txt is newer than
# pom.xml and everything under src/. Honours MAVEN_REPO_LOCAL (default: Maven's ~/.m2/repository).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

stamp=target/classpath.txt
jar=target/hapi-test-server.jar
mkdir -p target

# Serialise concurrent builds (e.g. CI and a test fixture at once).
exec 9>target/.build.lock
flock 9

up_to_date() {
    [[ -s $stamp && -f $jar ]] || return 1
    [[ -z $(find pom.xml src -newer "$stamp" -print -quit) ]]
}

if up_to_date; then
    echo "build.sh: up to date (target/classpath.txt newer than pom.xml and src/)" >&2
    exit 0
fi

mvn_args=(-B -q -DskipTests -Dstyle.color=never)
if [[ -n ${MAVEN_REPO_LOCAL:-} ]]; then
    mvn_args+=("-Dmaven.repo.local=$MAVEN_REPO_LOCAL")
fi

start=$(date +%s)
echo "build.sh: building HAPI FHIR test server (first build downloads ~340 MB from Maven Central)..." >&2
rm -f "$stamp"
# (Debian's Maven prints stray ANSI resets even with -B -q: strip them.)
mvn "${mvn_args[@]}" package dependency:build-classpath 2>&1 | sed -u $'s/\x1b\\[[0-9;]*m//g' >&2
[[ -s $stamp && -f $jar ]] || { echo "build.sh: maven finished but $stamp or $jar is missing" >&2; exit 1; }
touch "$stamp"
echo "build.sh: built in $(( $(date +%s) - start )) s" >&2
