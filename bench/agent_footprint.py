"""The agent's footprint on a device: RSS idle and while downloading a 500 MiB bundle, CPU while idle, and the
throughput of a remote shell through the server.

One lab device (real RAUC service + the agent) against a local server. While idle the agent samples its metrics
every 10 s and holds its remote-session control channel (the tenant allows sessions). The reference in the same
run is curl downloading the same bundle from the same server (a C client with a fixed buffer), and `cat` of the
same file on a local pseudo-terminal (`script`) for the shell.
Goals (issues #4 and #25): idle RSS <= 30 MiB, flat memory while downloading, idle CPU <= 1 % over 60 s.
Usage (root): .venv/bin/python bench/agent_footprint.py [--size-mib 500] [--idle-seconds 60] [--shell-mib 100]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import free_port, random_bundle, start_bulkhead, write_result

from bulkhead.lab.device import DeviceSpec, LabDevice

TICK = os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


class Sampler(threading.Thread):
    """Samples a process's RSS every 50 ms."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.samples, self.stop = pid, [], False
        self.samples: list[int] = []

    def run(self) -> None:
        while not self.stop:
            try:
                self.samples.append(rss_kib(self.pid))
            except (FileNotFoundError, ProcessLookupError):
                return
            time.sleep(0.05)


def shell_throughput(base: str, token: str, tmp: Path, mib: int, agent_pid: int) -> dict[str, float]:
    """`bulkhead device shell` running `cat` of a file of `mib` MiB, its output counted; the same `cat` on a local
    pseudo-terminal as the reference."""
    data = tmp / "shell-payload"
    with data.open("wb") as f:
        for _ in range(mib):
            f.write(os.urandom(1 << 20))
    env = {**os.environ, "BULKHEAD_SERVER": base, "BULKHEAD_TOKEN": token}
    sampler = Sampler(agent_pid)
    sampler.start()
    t0 = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "bulkhead.cli", "device", "shell", "bench-0"],
        input=f"stty raw -echo; cat {data}; exit\n".encode(),
        capture_output=True,
        env=env,
        check=False,
    )
    seconds = time.monotonic() - t0
    sampler.stop = True
    sampler.join()
    got = len(run.stdout)
    if run.returncode != 0 or got < mib << 20:
        sys.exit(f"the shell gave {got} bytes, exit {run.returncode}: {run.stderr.decode()[-500:]}")
    t1 = time.monotonic()
    ref = subprocess.run(["script", "-qc", f"stty raw -echo; cat {data}", "/dev/null"], capture_output=True, check=True)
    ref_seconds = time.monotonic() - t1
    assert len(ref.stdout) >= mib << 20
    return {
        "seconds": seconds,
        "mib_s": got / 2**20 / seconds,
        "rss_max": max(sampler.samples or [0]),
        "ref_seconds": ref_seconds,
        "ref_mib_s": len(ref.stdout) / 2**20 / ref_seconds,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=500)
    ap.add_argument("--idle-seconds", type=int, default=60)
    ap.add_argument("--shell-mib", type=int, default=100)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the lab device's RAUC service needs it")
    path, ca = random_bundle("agent", args.size_mib)
    tmp = Path(tempfile.mkdtemp(prefix="bh-agent-bench-"))
    port = free_port()
    srv = start_bulkhead(tmp / "server", port)
    base = f"http://127.0.0.1:{port}"
    dev: LabDevice | None = None
    try:
        admin = (tmp / "server" / "admin.token").read_text().strip()
        with httpx.Client(base_url=base, timeout=600) as c:
            tok = c.post("/api/v1/tenants", json={"name": "bench"}, headers={"authorization": f"Bearer {admin}"}).json()["token"]
            h = {"authorization": f"Bearer {tok}"}
            c.put("/api/v1/keyring", json={"pem": ca.read_text()}, headers=h).raise_for_status()
            with path.open("rb") as f:
                rel = c.post("/api/v1/releases", content=f, headers=h).json()
            boot = c.post("/api/v1/bootstrap-tokens", json={"name": "b", "group": "g"}, headers=h).json()["token"]
            c.put("/api/v1/remote-access", json={"enabled": True}, headers=h).raise_for_status()
            dev = LabDevice(tmp / "dev", DeviceSpec("bench-0", base, boot, "bench", ca, "1", slot_size=(args.size_mib + 64) << 20,
                                                    poll_interval=10.0, metrics_interval=10.0))  # fmt: skip
            dev.power_on()
            assert dev.agent is not None
            pid = dev.agent.pid
            time.sleep(8)  # enrollment, first poll, inventory
            rss_idle_start = rss_kib(pid)
            cpu0, t0 = cpu_seconds(pid), time.monotonic()
            time.sleep(args.idle_seconds)
            idle_cpu = (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0) * 100
            rss_idle = rss_kib(pid)
            samples = len(c.get("/api/v1/devices/bench-0/metrics", headers=h).json())
            shell = shell_throughput(base, tok, tmp, args.shell_mib, pid)

            sampler = Sampler(pid)
            sampler.start()
            c.put("/api/v1/devices/bench-0/desired-release", json={"release_id": rel["id"]}, headers=h).raise_for_status()
            part = dev.data_dir / "downloads" / f"{rel['sha256']}.raucb.part"
            t_start = None
            while True:
                phase = dev.update_state().get("phase")
                if t_start is None and part.exists():
                    t_start = time.monotonic()
                if phase in ("installing", "rebooting", "verifying") or (phase == "idle" and t_start):
                    break
                time.sleep(0.02)
            t_agent = time.monotonic() - (t_start or time.monotonic())
            sampler.stop = True
            sampler.join()
            during = sampler.samples
            # Reference: curl downloading the same bytes with the device's credential.
            cred = (dev.data_dir / "credential").read_text().strip()
            t1 = time.monotonic()
            curl = subprocess.run(
                ["/usr/bin/time", "-f", "%M", "curl", "-sS", "-o", "/dev/null", "-H", f"Authorization: Bearer {cred}",
                 f"{base}/device/v1/releases/{rel['id']}/bundle"],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            t_curl = time.monotonic() - t1
            curl_rss = int(curl.stderr.strip().splitlines()[-1])
    finally:
        if dev is not None:
            dev.shutdown()
        srv.terminate()
        srv.wait(20)
        shutil.rmtree(tmp, ignore_errors=True)
    mib = rel["size"] / 2**20
    q = sorted(during)
    write_result(
        "agent_footprint",
        f"Agent footprint: idle, and downloading a {mib:.0f} MiB bundle (reference: curl, same server, same run)",
        [
            ["measure", "bulkhead-agent", "curl (reference)", "goal"],
            [
                "RSS idle (after enrolling and reporting)",
                f"{rss_idle_start / 1024:.1f} MiB → {rss_idle / 1024:.1f} MiB",
                "",
                "≤ 30 MiB",
            ],
            [
                f"CPU idle over {args.idle_seconds} s (poll every 10 s, metrics every 10 s, tunnel's control channel open)",
                f"{idle_cpu:.2f} % ({samples} metric samples on the server)",
                "",
                "≤ 1 %",
            ],
            [
                f"remote shell: `cat` of {args.shell_mib} MiB (random) to the operator's terminal",
                f"{shell['seconds']:.1f} s ({shell['mib_s']:.0f} MiB/s); agent RSS max {shell['rss_max'] / 1024:.1f} MiB",
                f"local pty (`script`): {shell['ref_seconds']:.1f} s ({shell['ref_mib_s']:.0f} MiB/s)",
                "",
            ],
            [
                "RSS during download: min / median / max",
                f"{q[0] / 1024:.1f} / {q[len(q) // 2] / 1024:.1f} / {q[-1] / 1024:.1f} MiB",
                f"max {curl_rss / 1024:.1f} MiB",
                "flat",
            ],
            [
                "download time (rate-unlimited, loopback)",
                f"{t_agent:.1f} s ({mib / t_agent:.0f} MiB/s, incl. sha256)",
                f"{t_curl:.1f} s ({mib / t_curl:.0f} MiB/s)",
                "",
            ],
        ],
        notes="RSS is VmRSS sampled every 50 ms from /proc; the agent hashes the bundle after download (sha256), curl does not.",
    )


if __name__ == "__main__":
    main()
