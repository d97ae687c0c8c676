"""A real single-node Apache Kafka (KRaft) on 127.0.0.1, from Maven Central jars.

Used by `make broker`, the pytest session fixture and `make demo` alike:

    fetch_kafka(cache)   Maven copies the pinned broker jars into <cache>/kafka-<version>/lib (once)
    start_broker(cache)  formats a fresh KRaft log dir, starts the JVM on free ports, waits until an
                         AdminClient answers, and returns a LocalBroker whose stop() shuts it down.
    start_cluster(cache, nodes=3)  the production topology in miniature: N combined broker+controller
                         nodes (a static quorum, one cluster id formatted into each log dir),
                         replication factor min(N, 3) and min.insync.replicas one less (at least 1).
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka.admin import AdminClient

from sluice.errors import ConfigError

__all__ = ["KAFKA_VERSION", "LocalBroker", "LocalCluster", "fetch_kafka", "start_broker", "start_cluster"]

KAFKA_VERSION = "4.1.1"
LOG4J_VERSION = "2.24.3"
_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.sluice</groupId><artifactId>local-kafka</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{kafka}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-api</artifactId>
      <version>{log4j}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId>
      <version>{log4j}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j}</version></dependency>
  </dependencies>
</project>
"""

# Kafka 4.x logs through SLF4J 1.x; this binding keeps only warnings plus the "started" line.
_LOG4J2 = """status = warn
name = sluice-local-kafka
appender.console.type = Console
appender.console.name = STDOUT
appender.console.target = SYSTEM_OUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.stdout.ref = STDOUT
logger.raftserver.name = kafka.server.KafkaRaftServer
logger.raftserver.level = INFO
"""

_SERVER_PROPERTIES = """process.roles=broker,controller
node.id={node_id}
controller.quorum.voters={voters}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={data_dir}
num.partitions=1
num.recovery.threads.per.data.dir=1
offsets.topic.replication.factor={replicas}
offsets.topic.num.partitions=4
transaction.state.log.replication.factor={replicas}
transaction.state.log.min.isr={min_isr}
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor={replicas}
share.coordinator.state.topic.min.isr={min_isr}
default.replication.factor={replicas}
min.insync.replicas={min_isr}
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000
group.consumer.min.session.timeout.ms=1000
group.consumer.min.heartbeat.interval.ms=100
auto.create.topics.enable=false
log.cleaner.backoff.ms=1000
"""


def _require(tool: str, why: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise ConfigError(f"'{tool}' was not found on PATH; {why}")
    return path


def fetch_kafka(cache_dir: Path, version: str = KAFKA_VERSION) -> Path:
    """Return the folder of broker jars, downloading them with Maven the first time."""
    # Absolute: Maven resolves a relative output directory against the pom's folder, not ours.
    home = cache_dir.resolve() / f"kafka-{version}"
    lib = home / "lib"
    if (home / ".complete").exists() and any(lib.glob("kafka_*.jar")):
        return lib
    mvn = _require(
        "mvn",
        "Sluice fetches the Kafka broker from Maven Central with Maven (apt-get install maven)",
    )
    home.mkdir(parents=True, exist_ok=True)
    (home / "pom.xml").write_text(_POM.format(kafka=version, log4j=LOG4J_VERSION))
    cmd = [
        mvn,
        "-q",
        "-B",
        "-f",
        str(home / "pom.xml"),
        f"{_DEPENDENCY_PLUGIN}:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={lib}",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = (done.stdout + done.stderr)[-2000:]
        raise ConfigError(f"Maven could not fetch Kafka {version} from Maven Central:\n{tail}")
    (home / ".complete").write_text(version)
    return lib


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cluster_id() -> str:
    # KRaft wants 16 random bytes, base64url without padding, not starting with '-'.
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


@dataclass
class LocalBroker:
    """A running local broker; stop() shuts it down (SIGTERM, then SIGKILL) and removes its data."""

    bootstrap_servers: str
    process: subprocess.Popen[bytes]
    workdir: Path
    log_path: Path
    keep_data: bool = False
    _config: list[str] = field(default_factory=list)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the JVM cleanly; kill it if it does not exit within `timeout` seconds."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if not self.keep_data:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def kill(self) -> None:
        """SIGKILL the broker, keeping its data so restart() recovers from the log."""
        self.process.kill()
        self.process.wait()

    def restart(self, ready_timeout: float = 90.0) -> None:
        """Start the same node again on the same ports and data (after stop(keep) or kill())."""
        self.process = _launch(self._config, self.log_path)
        _wait_ready(self, ready_timeout)

    def __enter__(self) -> LocalBroker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _launch(cmd: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    log = log_path.open("ab")
    try:
        # A new session keeps Ctrl-C in the terminal from reaching the JVM before we stop it.
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        log.close()


def start_broker(
    cache_dir: Path,
    *,
    heap: str = "512m",
    port: int | None = None,
    ready_timeout: float = 90.0,
) -> LocalBroker:
    """Fetch (if needed), format and start a one-node KRaft broker; return once it answers."""
    ports = [port or free_port()]
    return start_cluster(cache_dir, 1, heap=heap, ports=ports, ready_timeout=ready_timeout).nodes[0]


@dataclass
class LocalCluster:
    """Local KRaft nodes sharing one cluster id; stop() stops them all."""

    nodes: list[LocalBroker]
    replication_factor: int
    min_insync_replicas: int

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(node.bootstrap_servers for node in self.nodes)

    def node(self, node_id: int) -> LocalBroker:
        """The node with this `node.id` (1-based, as Kafka reports leaders)."""
        return self.nodes[node_id - 1]

    def stop(self, timeout: float = 30.0) -> None:
        for node in self.nodes:
            node.stop(timeout)

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_cluster(
    cache_dir: Path,
    nodes: int = 3,
    *,
    heap: str = "512m",
    ports: list[int] | None = None,
    ready_timeout: float = 90.0,
) -> LocalCluster:
    """Fetch (if needed), format and start `nodes` combined KRaft nodes; return once all answer."""
    if nodes < 1:
        raise ConfigError(f"nodes must be at least 1, got {nodes}")
    java = _require("java", "the local Kafka broker needs Java 17+ (apt-get install openjdk-17-jre-headless)")
    lib = fetch_kafka(cache_dir)
    ports = ports or [free_port() for _ in range(nodes)]
    controllers = [free_port() for _ in range(nodes)]
    voters = ",".join(f"{i + 1}@127.0.0.1:{c}" for i, c in enumerate(controllers))
    replicas = min(nodes, 3)
    min_isr = max(1, replicas - 1)
    cluster_id = _cluster_id()
    classpath = f"{lib}{os.sep}*"
    started: list[LocalBroker] = []
    try:
        for i in range(nodes):
            workdir = Path(tempfile.mkdtemp(prefix="kafka-", dir=cache_dir))
            props = workdir / "server.properties"
            props.write_text(
                _SERVER_PROPERTIES.format(
                    node_id=i + 1,
                    voters=voters,
                    port=ports[i],
                    controller_port=controllers[i],
                    data_dir=workdir / "data",
                    replicas=replicas,
                    min_isr=min_isr,
                )
            )
            log4j = workdir / "log4j2.properties"
            log4j.write_text(_LOG4J2)
            fmt = ["kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props)]
            done = subprocess.run([java, "-cp", classpath, *fmt], capture_output=True, text=True, check=False)
            if done.returncode != 0:
                shutil.rmtree(workdir, ignore_errors=True)
                raise ConfigError(f"formatting KRaft storage failed:\n{(done.stdout + done.stderr)[-2000:]}")
            cmd = [
                java,
                f"-Xms{heap}",
                f"-Xmx{heap}",
                "-XX:+UseG1GC",
                "-XX:TieredStopAtLevel=1",
                f"-Dlog4j2.configurationFile={log4j}",
                "-cp",
                classpath,
                "kafka.Kafka",
                str(props),
            ]
            log_path = workdir / "broker.log"
            started.append(
                LocalBroker(f"127.0.0.1:{ports[i]}", _launch(cmd, log_path), workdir, log_path, _config=cmd)
            )
        # A node answers only once the quorum has a leader: start them all, then wait for each.
        for node in started:
            _wait_ready(node, ready_timeout, expect_brokers=nodes)
    except BaseException:
        for node in started:
            node.stop()
        raise
    return LocalCluster(started, replicas, min_isr)


def _wait_ready(broker: LocalBroker, timeout: float, expect_brokers: int = 1) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers, "log_level": 0})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if broker.process.poll() is not None:
            raise ConfigError(f"Kafka exited with {broker.process.returncode}:\n{_tail(broker.log_path)}")
        try:
            meta = admin.list_topics(timeout=1.0)
            if len(meta.brokers) >= expect_brokers:
                return
        except Exception:
            time.sleep(0.2)
    raise ConfigError(f"Kafka did not answer within {timeout:.0f}s:\n{_tail(broker.log_path)}")


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"
