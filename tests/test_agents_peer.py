"""The agents' peer service on 127.0.0.1: blobs by hash (checked before anyone decodes), size limits, tokens,
signed votes and published scores; the experiment file and `colearn deploy`'s refusals."""
from __future__ import annotations

import hashlib

import pytest

pytest.importorskip("web3")
pytest.importorskip("grpc")

from colearn.ledger.blobstore import BlobIntegrityError, BlobStore  # noqa: E402
from colearn.ledger.chain import throwaway_keys  # noqa: E402
from colearn.ledger.peer_service import PeerClient, PeerError, VoteBook, serve_peer  # noqa: E402
from colearn.ledger.votes import sign_vote, signer_of  # noqa: E402

CONTRACT = "0x" + "12" * 20


@pytest.fixture
def peer(tmp_path):
    store, book = BlobStore(tmp_path / "blobs"), VoteBook(tmp_path / "votes")
    server = serve_peer(store, book, "127.0.0.1", 0, tokens=["s3cret"])
    yield store, book, server
    server.stop()


def client_of(server, **kwargs) -> PeerClient:
    return PeerClient(server.address, token=kwargs.pop("token", "s3cret"), timeout=10, **kwargs)


def test_blobs_come_by_hash_and_only_if_the_bytes_hash_to_it(peer):
    store, _, server = peer
    blob = bytes(range(256)) * 5000  # 1.28 MB: several pieces
    digest = store.put(blob)
    client = client_of(server)
    assert client.fetch_blob(digest) == blob and client.bytes_received == len(blob)
    with pytest.raises(PeerError, match="NOT_FOUND"):
        client.fetch_blob("ab" * 32)
    with pytest.raises(PeerError, match="over the limit"):
        client_of(server, max_bytes=1000).fetch_blob(digest)

    class Liar(BlobStore):
        def get(self, name):
            return b"other bytes"

    server.servicer.store = Liar(store.root)
    with pytest.raises(BlobIntegrityError, match="refused"):
        client.fetch_blob(digest)
    client.close()


def test_the_peer_service_wants_the_token_and_tls_off_loopback(peer, tmp_path):
    store, book, server = peer
    digest = store.put(b"weights")
    with pytest.raises(PeerError, match="UNAUTHENTICATED"):
        client_of(server, token="wrong").fetch_blob(digest)
    with pytest.raises(PeerError, match="UNAUTHENTICATED"):
        client_of(server, token=None).fetch_vote(0, 1)
    with pytest.raises(ValueError, match="without TLS"):
        serve_peer(store, book, "0.0.0.0", 0, tokens=["t"])
    with pytest.raises(ValueError, match="without a token"):
        from colearn.grpc.security import ServerTLS, make_self_signed

        cert, key = make_self_signed(tmp_path / "certs")
        serve_peer(store, book, "0.0.0.0", 0, tls=ServerTLS(str(cert), str(key)))
    with pytest.raises(ValueError, match="without TLS"):
        PeerClient("192.0.2.1:7000")


def test_blobs_travel_over_tls_checked_against_the_peer_certificate(tmp_path):
    from colearn.grpc.security import ClientTLS, ServerTLS, make_self_signed

    cert, key = make_self_signed(tmp_path / "certs", ("127.0.0.1",))
    other, _ = make_self_signed(tmp_path / "other", ("127.0.0.1",), name="other")
    store = BlobStore(tmp_path / "blobs")
    digest = store.put(b"weights over tls")
    server = serve_peer(store, VoteBook(tmp_path / "votes"), "127.0.0.1", 0, tls=ServerTLS(str(cert), str(key)),
                        tokens=["t"])
    try:
        good = PeerClient(server.address, tls=ClientTLS(ca_file=str(cert)), token="t", timeout=10)
        assert good.fetch_blob(digest) == b"weights over tls"
        wrong_ca = PeerClient(server.address, tls=ClientTLS(ca_file=str(other)), token="t", timeout=5)
        with pytest.raises(PeerError, match="UNAVAILABLE"):
            wrong_ca.fetch_blob(digest)
        plaintext = PeerClient(server.address, token="t", timeout=5)
        with pytest.raises(PeerError):
            plaintext.fetch_blob(digest)
        for client in (good, wrong_ca, plaintext):
            client.close()
    finally:
        server.stop()


def test_signed_votes_and_scores_are_served_and_survive_a_restart(peer, tmp_path):
    _, book, server = peer
    key = throwaway_keys(1)[0]
    model = hashlib.sha256(b"proposal").digest()
    vote = sign_vote(key, 1337, CONTRACT, 4, 2, model, approve=False)
    book.put_vote(vote)
    book.put_scores(4, 0.75, None)
    client = client_of(server)
    served = client.fetch_vote(4, 2)
    assert served == vote and signer_of(served, 1337, CONTRACT) == key.address
    assert signer_of(served, 1337, "0x" + "34" * 20) != key.address  # another experiment: another signer
    assert client.fetch_vote(5, 2) is None
    assert client.fetch_scores(4) == (0.75, None) and client.fetch_scores(-1) is None
    assert VoteBook(tmp_path / "votes").vote(4) == vote  # on disk: a restarted agent serves the same vote
    client.close()


def test_deploy_refuses_bad_settings_by_name(tmp_path):
    from colearn.ledger.chain import embedded_chain
    from colearn.ledger.experiment_file import ExperimentFile, deploy_experiment, open_experiment

    keys = throwaway_keys(3)
    chain = embedded_chain([k.address for k in keys])
    with pytest.raises(ValueError, match="learners: entry 1"):
        deploy_experiment(chain, keys[0], [keys[0].address, "0xnot"])
    with pytest.raises(ValueError, match="quorum"):
        deploy_experiment(chain, keys[0], [k.address for k in keys], quorum=1.5)
    experiment = deploy_experiment(chain, keys[0], [k.address for k in keys], vote_threshold=0.7, quorum=0.6)
    assert experiment.threshold == (7, 10) and experiment.quorum == (3, 5)
    loaded = ExperimentFile.load(experiment.save(tmp_path / "experiment.json"))
    assert open_experiment(chain, loaded).address == experiment.contract
    forged = loaded.model_copy(update={"threshold": (1, 10)})  # a file that lies about the settings
    with pytest.raises(Exception, match="settings the file names"):
        open_experiment(chain, forged)
