"""colearn 0.2.x's ``colearn_grpc``: learners built by an :class:`MliFactory` and served over gRPC.

The Python API is 0.2.x's (``MliFactory``, ``FactoryRegistry``, ``GRPCServer``, ``GRPCLearnerServer``,
``ExampleMliFactory``, ``ExampleGRPCLearnerClient``, ``utils``, ``logging``); underneath it is colearn's learner
service (:mod:`colearn.grpc`): weights travel as typed arrays (:mod:`colearn.encoding`), never pickles, are
validated before a learner sees them, and servers need TLS and a token off loopback. See docs/migrating.md.
Needs the ``grpc`` extra (``pip install 'colearn[grpc]'``).
"""
