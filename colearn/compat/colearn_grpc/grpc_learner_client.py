"""0.2.x's older client module name: ``GRPCLearnerClient`` is :class:`ExampleGRPCLearnerClient`."""
from colearn_grpc.example_grpc_learner_client import ExampleGRPCLearnerClient as GRPCLearnerClient  # noqa: F401
from colearn_grpc.example_grpc_learner_client import GRPCClientException  # noqa: F401
