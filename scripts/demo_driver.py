#!/usr/bin/python3
"""Serving half of `make demo`: start faceid-server on loopback with a fresh database, enroll
people the model never saw (the test identities of the trainer's split.json) with the `faceid`
client, identify their other photos and photos of people who were not enrolled, print one line
per probe and a summary, then stop the server cleanly.

Uses only the `faceid` CLI (its --json output), so the demo exercises what a user runs.
Writes <run>/demo_summary.json for tests.
"""

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".pgm", ".ppm", ".tif", ".tiff")


def natural_key(name):
    """Natural filename order, as the evaluation protocol uses (img2 before img10)."""
    parts, digits = [], ""
    for ch in name:
        if ch.isdigit():
            digits += ch
            continue
        if digits:
            parts.append((0, int(digits), ""))
            digits = ""
        parts.append((1, 0, ch))
    if digits:
        parts.append((0, int(digits), ""))
    return parts


def person_images(folder):
    files = [f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS)]
    return [os.path.join(folder, f) for f in sorted(files, key=natural_key)]


def free_loopback_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Client:
    def __init__(self, binary, server):
        self.binary = binary
        self.server = server

    def run(self, *args, check=True):
        cmd = [self.binary, "--server", self.server, "--json", "--quiet", *args]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:6])} ... failed ({proc.returncode}): "
                               f"{proc.stderr.strip()}")
        doc = json.loads(proc.stdout) if proc.stdout.strip() else {}
        return proc.returncode, doc, proc.stderr


def pick_people(split, max_enrolled, max_unknown, enroll_per_person):
    """Test identities with enough photos are enrolled (first N photos) and probed with the
    rest; other test identities are never enrolled and probe as unknowns."""
    enrolled, unknown = [], []
    for dataset in split["datasets"]:
        for name in sorted(dataset.get("test", [])):
            folder = os.path.join(dataset["path"], name)
            if not os.path.isdir(folder):
                continue
            images = person_images(folder)
            entry = {"name": name, "images": images, "crops": bool(dataset.get("crops"))}
            if len(images) > enroll_per_person:
                enrolled.append(entry)
            elif len(images) >= 1:
                unknown.append(entry)
    # Keep both groups: when few people have enough photos, the last few become unknowns.
    if not unknown and len(enrolled) > 2:
        unknown = enrolled[len(enrolled) * 2 // 3:]
        enrolled = enrolled[:len(enrolled) * 2 // 3]
    return enrolled[:max_enrolled], unknown[:max_unknown]


def wait_for_health(client, server_proc, timeout_s):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if server_proc.poll() is not None:
            raise RuntimeError(f"faceid-server exited early with code {server_proc.returncode}")
        code, _, _ = client.run("health", check=False)
        if code == 0:
            return
        time.sleep(0.5)
    raise RuntimeError(f"faceid-server did not report SERVING within {timeout_s} s")


def best_candidate(result):
    faces = result.get("faces", [])
    if not faces:
        return None, None, "no face"
    face = faces[0]
    candidates = face.get("candidates", [])
    if not candidates:
        return None, None, face.get("decision", "")
    return candidates[0]["external_id"], float(candidates[0]["similarity"]), face.get("decision")


def identify(client, files, crops):
    args = ["identify", "--top-k", "3", *files]
    if crops:
        args.insert(1, "--crops")
    _, doc, _ = client.run(*args, check=False)
    return doc.get("results", []), doc.get("threshold")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bin", required=True, help="folder with faceid-server and faceid")
    parser.add_argument("--run", required=True,
                        help="faceid-train fit --out folder (model.faceid, run/split.json)")
    parser.add_argument("--model", help="model file (default: <run>/model.faceid)")
    parser.add_argument("--max-enrolled", type=int, default=30)
    parser.add_argument("--max-unknown", type=int, default=30)
    parser.add_argument("--enroll-per-person", type=int, default=5)
    parser.add_argument("--max-probes-per-person", type=int, default=5)
    args = parser.parse_args()

    model = args.model or os.path.join(args.run, "model.faceid")
    split_path = os.path.join(args.run, "run", "split.json")
    if not os.path.exists(split_path):
        split_path = os.path.join(args.run, "split.json")
    with open(split_path) as f:
        split = json.load(f)
    enrolled, unknown = pick_people(split, args.max_enrolled, args.max_unknown,
                                    args.enroll_per_person)
    if not enrolled:
        sys.exit("demo: the split has no test identity with more than "
                 f"{args.enroll_per_person} photos; use a larger data set")

    db = os.path.join(args.run, "demo.db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.remove(db + suffix)
    server_addr = f"127.0.0.1:{free_loopback_port()}"
    log_path = os.path.join(args.run, "demo-server.log")
    print(f"demo: starting faceid-server on {server_addr} (log: {log_path})", flush=True)
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            [os.path.join(args.bin, "faceid-server"), "--model", model, "--db", db,
             "--listen", server_addr], stdout=log, stderr=subprocess.STDOUT)
    client = Client(os.path.join(args.bin, "faceid"), server_addr)
    try:
        wait_for_health(client, server, 120)
        summary = run_demo(client, enrolled, unknown, args)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    print(f"demo: faceid-server stopped (exit code {server.returncode})")
    summary["server_exit_code"] = server.returncode
    summary["database"] = db
    with open(os.path.join(args.run, "demo_summary.json"), "w") as f:
        json.dump(summary, f, indent=2)


def run_demo(client, enrolled, unknown, args):
    print(f"demo: enrolling {len(enrolled)} people the model never saw "
          f"({args.enroll_per_person} photos each)", flush=True)
    for person in enrolled:
        files = person["images"][:args.enroll_per_person]
        cmd = ["enroll", "--name", person["name"], "--id", person["name"], *files]
        if person["crops"]:
            cmd.insert(1, "--crops")
        client.run(*cmd, check=False)

    correct = known_correct = probes = 0
    print("demo: identifying their other photos "
          "(ok = right person and known, ~ = right person but below the threshold, x = wrong)")
    threshold = None
    for person in enrolled:
        files = person["images"][args.enroll_per_person:][:args.max_probes_per_person]
        results, threshold = identify(client, files, person["crops"])
        for file, result in zip(files, results):
            who, sim, decision = best_candidate(result)
            probes += 1
            hit = who == person["name"]
            correct += hit
            known_correct += hit and decision == "DECISION_KNOWN"
            shown = "unknown" if decision != "DECISION_KNOWN" else who
            if decision == "no face":
                shown = "no face found"
            sim_text = f"{sim:.3f}" if sim is not None else "  -  "
            mark = "ok " if hit and decision == "DECISION_KNOWN" else ("~  " if hit else "x  ")
            print(f"  {mark} {os.path.basename(file):32s} -> {shown:28s} "
                  f"(closest {who or '-'}, similarity {sim_text})")

    rejected = false_accepts = unknown_probes = 0
    print("demo: identifying people who were not enrolled (should be unknown)")
    for person in unknown:
        files = person["images"][:1]
        results, threshold = identify(client, files, person["crops"])
        for file, result in zip(files, results):
            who, sim, decision = best_candidate(result)
            if decision == "no face":
                continue
            unknown_probes += 1
            ok = decision != "DECISION_KNOWN"
            rejected += ok
            false_accepts += not ok
            sim_text = f"{sim:.3f}" if sim is not None else "  -  "
            print(f"  {'ok ' if ok else 'x  '} {os.path.basename(file):32s} -> "
                  f"{'unknown' if ok else who:28s} (similarity {sim_text})")

    latency = measure_latency(client, enrolled[0]["images"][-1], enrolled[0]["crops"])
    summary = {
        "enrolled_people": len(enrolled),
        "probes": probes,
        "rank1": correct / probes if probes else 0.0,
        "recognised_above_threshold": known_correct / probes if probes else 0.0,
        "chance_rank1": 1.0 / len(enrolled),
        "unknown_probes": unknown_probes,
        "unknown_rejected": rejected / unknown_probes if unknown_probes else 0.0,
        "false_accepts": false_accepts,
        "threshold": threshold,
        "median_identify_ms": latency,
    }
    print("\ndemo summary")
    print(f"  enrolled people          {len(enrolled)} (never seen in training)")
    print(f"  rank-1 on their probes   {summary['rank1']:.1%} of {probes} "
          f"(chance {summary['chance_rank1']:.1%})")
    threshold_text = f"{threshold:.3f}" if isinstance(threshold, float) else str(threshold)
    print(f"  known above threshold    {summary['recognised_above_threshold']:.1%} "
          f"(threshold {threshold_text})")
    print(f"  unknowns rejected        {summary['unknown_rejected']:.1%} of {unknown_probes}")
    print(f"  false accepts            {false_accepts}")
    print(f"  median identify latency  {latency:.1f} ms" if latency is not None else
          "  median identify latency  n/a")
    return summary


def measure_latency(client, image, crops):
    """Median over single-image Identify calls, measured by the client's load test."""
    code, doc, _ = client.run("bench", "--image", image, "--requests", "30",
                              "--concurrency", "1", check=False)
    if code == 0 and isinstance(doc, dict):
        for key in ("p50_ms", "latency_p50_ms"):
            if key in doc:
                return float(doc[key])
        if "latency" in doc and "p50_ms" in doc["latency"]:
            return float(doc["latency"]["p50_ms"])
    # Fall back to timing the CLI itself (includes process start-up).
    times = []
    for _ in range(5):
        start = time.perf_counter()
        identify(client, [image], crops)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


if __name__ == "__main__":
    main()
