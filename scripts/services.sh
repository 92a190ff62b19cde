#!/usr/bin/env bash
# Installs and runs the Kafka broker and the ClickHouse server that SyncGuard
# needs for development and tests, both on 127.0.0.1 and on non-default ports.
#
# Usage: scripts/services.sh start|stop|status|env|tools|reset
#
#   start   installs what is missing, starts the services that are not running
#           and waits until each accepts requests
#   stop    stops the processes that `start` recorded in .local/<service>.pid
#   status  prints running/stopped per service, exits 0 only if all run
#   env     prints the export lines that the Go tests read
#   tools   installs the command-line tools that tests use (promtool)
#   reset   stops the services and deletes their data
#
# Environment:
#   SERVICES             services to act on (default "kafka clickhouse")
#   SYNCGUARD_LOCAL_DIR  data, logs and pid files (default <repo>/.local)
#   KAFKA_VERSION        org.apache.kafka:kafka_2.13 version (default 4.4.0)
#   KAFKA_CACHE_DIR      jar cache (default ~/.cache/syncguard/kafka-<version>)
#   START_TIMEOUT        seconds to wait for each service to start (default 120)
#   CLICKHOUSE_NICE      scheduling niceness of ClickHouse (default 10; 0 gives
#                        it the same priority as Kafka and SyncGuard)
#   KAFKA_PORT, KAFKA_CONTROLLER_PORT
#                        broker and controller ports (default 19092, 19093);
#                        a test that stops its own broker sets them, with
#                        its own SYNCGUARD_LOCAL_DIR
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(dirname "$script_dir")
local_dir=$(realpath -m "${SYNCGUARD_LOCAL_DIR:-$repo_root/.local}")
services=${SERVICES:-kafka clickhouse}
kafka_version=${KAFKA_VERSION:-4.4.0}
kafka_cache_dir=${KAFKA_CACHE_DIR:-$HOME/.cache/syncguard/kafka-$kafka_version}
kafka_libs=$kafka_cache_dir/libs
start_timeout=${START_TIMEOUT:-120}
clickhouse_nice=${CLICKHOUSE_NICE:-10}

readonly kafka_port=${KAFKA_PORT:-19092} kafka_controller_port=${KAFKA_CONTROLLER_PORT:-19093}
readonly clickhouse_tcp_port=19000 clickhouse_http_port=18123

# Port that must accept connections while a service runs, and a string that
# the service's command line contains (see running_pid).
declare -A service_port=([kafka]=$kafka_port [clickhouse]=$clickhouse_tcp_port)
declare -A service_marker=([kafka]=kafka.Kafka [clickhouse]=clickhouse-server)

log() { echo "services.sh: $*"; }
fail() { echo "services.sh: error: $*" >&2; exit 1; }

# --- process helpers --------------------------------------------------------

port_open() {
    timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# Prints the recorded pid of a service if that process still runs. The command
# line must contain the service's marker, so a pid reused by another program
# after a crash is never taken for the service.
running_pid() {
    local pid_file=$local_dir/$1.pid pid
    [[ -f $pid_file ]] || return 1
    pid=$(<"$pid_file")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q -- "${service_marker[$1]}" || return 1
    echo "$pid"
}

# Starts "$@" in its own session, detached from this shell, so that it keeps
# running after the caller's terminal or job ends. The child writes its own pid
# before exec, because `setsid` forks when the caller leads a process group and
# $! would then be the pid of the short-lived fork.
spawn() {
    local service=$1 output_file=$2
    shift 2
    local pid_file=$local_dir/$service.pid
    rm -f "$pid_file"
    # shellcheck disable=SC2016 # $$ and $@ belong to the inner shell.
    setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pid_file" "$@" \
        </dev/null >>"$output_file" 2>&1 9>&- &
    for _ in $(seq 50); do
        [[ -s $pid_file ]] && return 0
        sleep 0.1
    done
    fail "$service did not write its pid file $pid_file"
}

# Sets the autogroup nice value of PID's session. With autogroup scheduling a
# thread's nice value counts only within its session, and each service has one.
lower_session_priority() {
    local pid=$1 nice=$2
    if [[ -w /proc/$pid/autogroup ]]; then
        echo "$nice" >"/proc/$pid/autogroup" 2>/dev/null ||
            log "could not lower the scheduling priority of pid $pid's session"
    fi
}

# Polls `ready_command` once a second until it succeeds. On timeout, or when
# the process exits, prints the tail of each log file and exits non-zero. A
# process that timed out is stopped, so the next `start` begins afresh.
wait_ready() {
    local service=$1 ready_command=$2
    shift 2
    local deadline=$((SECONDS + start_timeout))
    local pid
    pid=$(<"$local_dir/$service.pid")
    until $ready_command; do
        # kill -0 and not running_pid: while the process is still executing
        # its way to the server, /proc/PID/cmdline can be empty.
        if ! kill -0 "$pid" 2>/dev/null; then
            tail_logs "$@"
            rm -f "$local_dir/$service.pid"
            fail "$service exited during startup; see the logs above"
        fi
        if ((SECONDS >= deadline)); then
            tail_logs "$@"
            stop_service "$service"
            fail "$service did not become ready within ${start_timeout}s; see the logs above"
        fi
        sleep 1
    done
}

tail_logs() {
    local file
    for file in "$@"; do
        [[ -f $file ]] || continue
        echo "----- last 40 lines of $file" >&2
        tail -n 40 "$file" >&2
    done
}

# Stops a service by its recorded pid. Sends TERM, waits up to 20 s for the
# exit, then sends KILL.
stop_service() {
    local service=$1 pid
    if ! pid=$(running_pid "$service"); then
        rm -f "$local_dir/$service.pid"
        log "$service: not running"
        return 0
    fi
    kill -TERM "$pid"
    for _ in $(seq 200); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "$service: pid $pid still runs 20 s after TERM, sending KILL"
        kill -KILL "$pid"
    fi
    rm -f "$local_dir/$service.pid"
    log "$service: stopped (pid $pid)"
}

# Returns 0 if the service runs and accepts connections. Fails the script if
# another program listens on the service's port, because the new process could
# not bind it.
already_running() {
    local service=$1 port=${service_port[$1]} pid
    if pid=$(running_pid "$service"); then
        if port_open "$port"; then
            log "$service: already running (pid $pid)"
            return 0
        fi
        fail "$service: pid $pid runs but port $port does not accept connections; run '$0 stop' and start again"
    fi
    if port_open "$port"; then
        fail "$service: port $port is in use by a process that this script did not start (see 'ss -ltnp'); stop it first"
    fi
    return 1
}

# --- installation -----------------------------------------------------------

apt_install() {
    local sudo=
    [[ $EUID -eq 0 ]] || sudo=sudo
    log "installing $* with apt-get"
    # The first attempt fails on a machine whose package lists were never fetched.
    if ! $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"; then
        $sudo apt-get update -q
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"
    fi
}

java_bin() {
    if [[ -n ${JAVA_HOME:-} ]]; then echo "$JAVA_HOME/bin/java"; else echo java; fi
}

# Kafka 4.x brokers need Java 17 or newer.
ensure_java() {
    command -v "$(java_bin)" >/dev/null || apt_install openjdk-17-jre-headless
    local version major
    version=$("$(java_bin)" -version 2>&1 | awk -F'"' '/version/ { print $2; exit }')
    major=${version%%.*}
    [[ $major =~ ^[0-9]+$ && $major -ge 17 ]] ||
        fail "Kafka $kafka_version needs Java 17 or newer, but $(java_bin) is version '$version'; set JAVA_HOME"
}

# Downloads the broker jars once into $kafka_libs. They are copied into a
# temporary folder first, so an interrupted download is never taken for a
# complete cache.
ensure_kafka_jars() {
    [[ -d $kafka_libs ]] && return 0
    command -v mvn >/dev/null || apt_install maven
    mkdir -p "$kafka_cache_dir"
    local partial
    partial=$(mktemp -d "$kafka_cache_dir/libs.partial.XXXXXX")
    log "kafka: fetching kafka_2.13 $kafka_version and its dependencies into $kafka_libs"
    if ! mvn -q -B -Dstyle.color=never -f "$script_dir/kafka/pom.xml" \
        dependency:copy-dependencies \
        -Dkafka.version="$kafka_version" -DoutputDirectory="$partial" \
        >"$partial.log" 2>&1; then
        tail_logs "$partial.log"
        rm -rf "$partial"
        fail "kafka: mvn dependency:copy-dependencies failed for version $kafka_version; see the output above"
    fi
    # mv -T fails instead of nesting when a parallel run already filled libs/.
    mv -T "$partial" "$kafka_libs" 2>/dev/null || rm -rf "$partial"
    rm -f "$partial.log"
}

ensure_clickhouse() {
    # Debian installs clickhouse-server into /usr/sbin, which a non-root PATH lacks.
    local have_server=0 have_client=0
    command -v clickhouse-server >/dev/null || [[ -x /usr/sbin/clickhouse-server ]] && have_server=1
    command -v clickhouse-client >/dev/null && have_client=1
    if ((have_server == 0 || have_client == 0)); then
        # NOTE: the package's postinst runs `invoke-rc.d clickhouse-server start`.
        # On a machine whose policy-rc.d allows it, this also starts the system
        # service on the default ports 9000 and 8123, which do not clash with ours.
        apt_install clickhouse-server clickhouse-client
    fi
}

# --- kafka ------------------------------------------------------------------

write_kafka_config() {
    local dir=$1
    cat >"$dir/server.properties" <<EOF
# Written by scripts/services.sh on each start. Edits here are lost.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$kafka_controller_port
listeners=PLAINTEXT://127.0.0.1:$kafka_port,CONTROLLER://127.0.0.1:$kafka_controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$kafka_port,CONTROLLER://127.0.0.1:$kafka_controller_port
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data

# A single node can hold only one replica of each partition.
num.partitions=3
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1

auto.create.topics.enable=false
group.initial.rebalance.delay.ms=0
EOF
    cat >"$dir/log4j2.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by scripts/services.sh on each start. Edits here are lost. -->
<Configuration status="warn">
  <Appenders>
    <RollingFile name="server" fileName="$dir/logs/server.log" filePattern="$dir/logs/server.log.%i">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
      <Policies><SizeBasedTriggeringPolicy size="50 MB"/></Policies>
      <DefaultRolloverStrategy max="5"/>
    </RollingFile>
  </Appenders>
  <Loggers>
    <Root level="info"><AppenderRef ref="server"/></Root>
  </Loggers>
</Configuration>
EOF
}

# Checks the port and the line that KafkaRaftServer logs once the broker
# serves requests (checked with Kafka 4.4.0). Only the part of server.log after
# $kafka_log_offset counts, which start_kafka sets before it starts the broker.
# grep reads from a process substitution, not a pipe, because with pipefail
# `tail | grep -q` fails whenever grep exits first and tail gets SIGPIPE.
kafka_ready() {
    port_open "$kafka_port" &&
        grep -q 'Kafka Server started' \
            < <(tail -c +$((kafka_log_offset + 1)) "$kafka_server_log" 2>/dev/null)
}

start_kafka() {
    already_running kafka && return 0
    ensure_java
    ensure_kafka_jars
    local dir=$local_dir/kafka java
    java=$(java_bin)
    mkdir -p "$dir/data" "$dir/logs"
    write_kafka_config "$dir"

    # KRaft storage is formatted once, with a new cluster id. --standalone
    # makes this node the only voter of a dynamic controller quorum.
    if [[ ! -f $dir/data/meta.properties ]]; then
        local cluster_id
        cluster_id=$("$java" -cp "$kafka_libs/*" kafka.tools.StorageTool random-uuid)
        log "kafka: formatting $dir/data with cluster id $cluster_id"
        "$java" -Dlog4j2.configurationFile="$dir/log4j2.xml" -cp "$kafka_libs/*" \
            kafka.tools.StorageTool format --standalone \
            --cluster-id "$cluster_id" --config "$dir/server.properties" \
            >>"$dir/logs/format.log" 2>&1 ||
            { tail_logs "$dir/logs/format.log"; fail "kafka: formatting $dir/data failed"; }
    fi

    # A "started" line left in server.log by an earlier run must not pass the
    # readiness check, so kafka_ready reads only what is logged after this offset.
    kafka_server_log=$dir/logs/server.log kafka_log_offset=0
    [[ -f $kafka_server_log ]] && kafka_log_offset=$(stat -c %s "$kafka_server_log")
    # Kafka's default heap, with Shenandoah: under the benchmark's load its
    # pauses stayed under 1 ms, where G1's reached 69 ms on two busy cores.
    # Some Java builds, such as Oracle's, lack Shenandoah and get G1 as
    # Kafka's scripts set it.
    local gc_opts=(-XX:+UseShenandoahGC)
    if ! "$java" -XX:+UseShenandoahGC -version >/dev/null 2>&1; then
        log "kafka: this Java has no Shenandoah collector, using G1"
        gc_opts=(-XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35)
    fi
    spawn kafka "$dir/logs/stdout.log" "$java" -Xms1g -Xmx1g "${gc_opts[@]}" \
        -XX:+ExplicitGCInvokesConcurrent \
        -Djava.awt.headless=true -Dlog4j2.configurationFile="$dir/log4j2.xml" \
        -cp "$kafka_libs/*" kafka.Kafka "$dir/server.properties"

    wait_ready kafka kafka_ready "$kafka_server_log" "$dir/logs/stdout.log"
    log "kafka: running on 127.0.0.1:$kafka_port (pid $(<"$local_dir/kafka.pid"), version $kafka_version, logs in $dir/logs)"
}

# --- clickhouse -------------------------------------------------------------

clickhouse_ready() {
    [[ $(curl -s --max-time 2 "http://127.0.0.1:$clickhouse_http_port/ping") == Ok. ]]
}

# Checks CLICKHOUSE_NICE. Leading zeros are rejected, because bash would
# read them as octal and nice as decimal.
check_clickhouse_nice() {
    if ! [[ $clickhouse_nice =~ ^-?(0|[1-9][0-9]?)$ ]] || ((clickhouse_nice < -20 || clickhouse_nice > 19)); then
        fail "CLICKHOUSE_NICE must be an integer from -20 to 19 without leading zeros, got '$clickhouse_nice'"
    fi
}

start_clickhouse() {
    if already_running clickhouse; then
        local pid current
        pid=$(running_pid clickhouse)
        current=$(ps -o nice= -p "$pid" | tr -d ' ')
        if [[ $current != "$clickhouse_nice" ]]; then
            log "clickhouse: runs at nice $current, not $clickhouse_nice; run '$0 stop' and start again to apply CLICKHOUSE_NICE"
        fi
        return 0
    fi
    ensure_clickhouse
    local dir=$local_dir/clickhouse server
    server=$(command -v clickhouse-server || echo /usr/sbin/clickhouse-server)
    mkdir -p "$dir"/{etc,data,tmp,user_files,format_schemas,logs}

    # Escape the characters that are special in a sed replacement.
    local escaped_dir=${dir//\\/\\\\}
    escaped_dir=${escaped_dir//|/\\|}
    escaped_dir=${escaped_dir//&/\\&}
    sed "s|@CLICKHOUSE_DIR@|$escaped_dir|g" "$script_dir/clickhouse/config.xml" >"$dir/etc/config.xml"
    cp "$script_dir/clickhouse/users.xml" "$dir/etc/users.xml"

    # Nothing waits for ClickHouse within a request, and its bursts of a whole
    # core delayed webhook acks on a shared machine, so it runs at lower priority.
    spawn clickhouse "$dir/logs/stdout.log" nice -n "$clickhouse_nice" "$server" --config-file="$dir/etc/config.xml"
    lower_session_priority "$(<"$local_dir/clickhouse.pid")" "$clickhouse_nice"

    wait_ready clickhouse clickhouse_ready "$dir/logs/clickhouse-server.err.log" "$dir/logs/stdout.log"
    local version
    version=$(clickhouse-client --port "$clickhouse_tcp_port" -q 'SELECT version()')
    log "clickhouse: running on 127.0.0.1:$clickhouse_tcp_port, HTTP on 127.0.0.1:$clickhouse_http_port" \
        "(pid $(<"$local_dir/clickhouse.pid"), version $version, logs in $dir/logs)"
}

# --- commands ---------------------------------------------------------------

for service in $services; do
    [[ $service == kafka || $service == clickhouse ]] ||
        fail "unknown service '$service' in SERVICES; expected kafka and/or clickhouse"
done

# Takes a lock on the local folder, so that a start and a stop, or two
# starts, run one after the other instead of racing for the same processes.
# spawn closes the lock's descriptor, so the services do not inherit it.
lock_local_dir() {
    mkdir -p "$local_dir"
    exec 9>"$local_dir/services.lock"
    flock 9
}

case ${1:-} in
    start)
        if [[ " $services " == *" clickhouse "* ]]; then
            check_clickhouse_nice
        fi
        lock_local_dir
        for service in $services; do "start_$service"; done
        ;;
    stop)
        lock_local_dir
        for service in $services; do stop_service "$service"; done
        ;;
    status)
        exit_code=0
        for service in $services; do
            if pid=$(running_pid "$service") && port_open "${service_port[$service]}"; then
                echo "$service: running (pid $pid, 127.0.0.1:${service_port[$service]})"
            else
                echo "$service: stopped"
                exit_code=1
            fi
        done
        exit "$exit_code"
        ;;
    env)
        echo "export SYNCGUARD_KAFKA_BROKERS=127.0.0.1:$kafka_port"
        echo "export SYNCGUARD_CLICKHOUSE_ADDR=127.0.0.1:$clickhouse_tcp_port"
        # The config key of the sink's ClickHouse, for syncguard run,
        # migrate and audit verify.
        echo "export SYNCGUARD_SINK_CLICKHOUSE_ADDR=127.0.0.1:$clickhouse_tcp_port"
        ;;
    tools)
        # promtool checks the Prometheus rules in the tests; it comes with
        # Debian's prometheus package and runs no server.
        command -v promtool >/dev/null || apt_install prometheus
        log "tools: promtool $(command -v promtool)"
        ;;
    reset)
        lock_local_dir
        for service in $services; do
            stop_service "$service"
            rm -rf "${local_dir:?}/$service"
            log "$service: deleted $local_dir/$service"
        done
        ;;
    *)
        echo "usage: $0 start|stop|status|env|tools|reset" >&2
        exit 2
        ;;
esac
