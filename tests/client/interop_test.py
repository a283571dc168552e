#!/usr/bin/python3
"""Interop check (issue 5): a python grpcio client, with stubs generated from proto/, enrolls and
identifies real faces against a child faceid-server on 127.0.0.1 and checks the standard health
service through the project's copy of health.proto.

Run by ctest (tests/client/CMakeLists.txt) after the faceid_model fixture:
  /usr/bin/python3 interop_test.py --stubs DIR --server-bin BIN --model FILE --split FILE
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import unittest

ARGS = None
READY_TIMEOUT_S = 120
PEOPLE = 2
ENROLLED_PER_PERSON = 3


def free_loopback_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pick_people(split_path):
    """(name, [enroll photos], probe photo) for PEOPLE training identities of a photo dataset."""
    with open(split_path) as f:
        split = json.load(f)
    picked = []
    for dataset in split["datasets"]:
        if dataset.get("crops", False):
            continue
        for name in sorted(dataset["train"]):
            folder = os.path.join(dataset["path"], name)
            photos = sorted(os.path.join(folder, p) for p in os.listdir(folder))
            if len(photos) <= ENROLLED_PER_PERSON:
                continue
            picked.append((name, photos[:ENROLLED_PER_PERSON], photos[ENROLLED_PER_PERSON]))
            if len(picked) == PEOPLE:
                return picked
    raise AssertionError("fixture split %s lacks %d photo identities with %d+ images"
                         % (split_path, PEOPLE, ENROLLED_PER_PERSON + 1))


def read(path):
    with open(path, "rb") as f:
        return f.read()


class InteropTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        sys.path.insert(0, ARGS.stubs)
        import grpc
        import faceid_pb2
        import faceid_pb2_grpc
        import health_pb2
        import health_pb2_grpc
        cls.grpc, cls.pb, cls.hpb = grpc, faceid_pb2, health_pb2

        cls.tmp = tempfile.TemporaryDirectory(prefix="faceid_interop_")
        cls.address = "127.0.0.1:%d" % free_loopback_port()
        cls.log = open(os.path.join(cls.tmp.name, "server.log"), "wb")
        env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
        cls.server = subprocess.Popen(
            [ARGS.server_bin, "--model", ARGS.model, "--db",
             os.path.join(cls.tmp.name, "gallery.db"), "--listen", cls.address],
            stdin=subprocess.DEVNULL, stdout=cls.log, stderr=subprocess.STDOUT, env=env)
        cls.channel = grpc.insecure_channel(cls.address)
        cls.stub = faceid_pb2_grpc.FaceIdStub(cls.channel)
        cls.health = health_pb2_grpc.HealthStub(cls.channel)

        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if cls.server.poll() is not None:
                cls._fail_start("faceid-server exited with %d" % cls.server.returncode)
            try:
                reply = cls.health.Check(health_pb2.HealthCheckRequest(), timeout=2)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    break
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                cls._fail_start("faceid-server not SERVING after %d s" % READY_TIMEOUT_S)
            time.sleep(0.25)

    @classmethod
    def _fail_start(cls, why):
        cls.tearDownClass()
        with open(os.path.join(cls.tmp.name, "server.log"), "rb") as f:
            tail = f.read()[-4000:].decode(errors="replace")
        raise AssertionError(why + "\n" + tail)

    @classmethod
    def tearDownClass(cls):
        if cls.server.poll() is None:
            cls.server.terminate()
            try:
                cls.server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                cls.server.kill()
                cls.server.wait()
        cls.channel.close()
        cls.log.close()

    def test_health_service_answers_serving_and_not_found(self):
        reply = self.health.Check(self.hpb.HealthCheckRequest(service=""), timeout=10)
        self.assertEqual(reply.status, self.hpb.HealthCheckResponse.SERVING)
        with self.assertRaises(self.grpc.RpcError) as caught:
            self.health.Check(self.hpb.HealthCheckRequest(service="no.such.Service"), timeout=10)
        self.assertEqual(caught.exception.code(), self.grpc.StatusCode.NOT_FOUND)

    def test_enroll_then_identify_real_faces(self):
        pb = self.pb
        people = pick_people(ARGS.split)
        gallery = "interop"
        for name, photos, _ in people:
            reply = self.stub.Enroll(pb.EnrollRequest(
                gallery=gallery, external_id=name, display_name=name,
                images=[read(p) for p in photos],
                options=pb.EnrollOptions(skip_invalid_images=True)), timeout=120)
            self.assertEqual(reply.person.external_id, name)
            self.assertEqual(len(reply.faces), len(photos))
            self.assertGreaterEqual(reply.person.face_count, 1)

        reply = self.stub.Identify(pb.IdentifyRequest(
            gallery=gallery, images=[read(probe) for _, _, probe in people], top_k=2),
            timeout=120)
        self.assertEqual(len(reply.results), len(people))
        top1 = []
        for result in reply.results:
            self.assertEqual(result.error.code, 0, result.error.message)
            self.assertGreaterEqual(len(result.faces), 1)
            top1.append(result.faces[0].candidates[0].external_id)
        correct = sum(1 for (name, _, _), best in zip(people, top1) if name == best)
        self.assertGreaterEqual(correct, 1, "top-1 %s for %s" % (top1, [p[0] for p in people]))

        info = self.stub.Info(pb.InfoRequest(), timeout=10)
        self.assertGreater(info.model.embedding_dim, 0)
        galleries = {g.name: g for g in info.galleries}
        self.assertEqual(galleries[gallery].people, len(people))

    def test_unknown_person_is_not_found(self):
        with self.assertRaises(self.grpc.RpcError) as caught:
            self.stub.GetPerson(self.pb.GetPersonRequest(external_id="nobody-here"), timeout=10)
        self.assertEqual(caught.exception.code(), self.grpc.StatusCode.NOT_FOUND)


def main():
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stubs", required=True)
    parser.add_argument("--server-bin", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--split", required=True)
    ARGS, rest = parser.parse_known_args()
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == "__main__":
    main()
