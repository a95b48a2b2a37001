"""Differentially private training with opacus: wrapping, budget reporting and budget prediction."""
from __future__ import annotations

import contextlib
import copy
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from colearn.ml_interface import DiffPrivBudget, DiffPrivConfig

ACCOUNTANT = "rdp"  # standard and cheap to predict with; opacus' PRV accountant is tighter but slower


def check_config(config: DiffPrivConfig) -> None:
    """Refuse settings opacus cannot honour, naming the field."""
    for name in ("target_epsilon", "target_delta", "max_grad_norm", "noise_multiplier"):
        value = getattr(config, name)
        if not value > 0:
            raise ValueError(f"diff_priv_config.{name} must be positive, got {value!r}")
    if config.target_delta >= 1:
        raise ValueError(f"diff_priv_config.target_delta must be below 1, got {config.target_delta!r}")


@dataclass
class PrivateTraining:
    """The opacus pieces one learner trains with, and its privacy accounting."""

    config: DiffPrivConfig
    engine: Any  # opacus.PrivacyEngine
    sample_rate: float

    @classmethod
    def make(cls, config: DiffPrivConfig, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
             train_loader: torch.utils.data.DataLoader, noise_generator: Optional[torch.Generator] = None,
             ) -> Tuple["PrivateTraining", torch.nn.Module, torch.optim.Optimizer, torch.utils.data.DataLoader]:
        """Wrap model, optimizer and loader for DP-SGD (per-sample clipping, Gaussian noise, Poisson sampling)."""
        try:
            from opacus import PrivacyEngine
        except ImportError as exc:  # pragma: no cover - opacus is part of the pytorch extra
            raise ImportError("differential privacy needs opacus: pip install 'colearn[pytorch]'") from exc
        check_config(config)
        with quiet_opacus():
            engine = PrivacyEngine(accountant=ACCOUNTANT)
            model, optimizer, train_loader = engine.make_private(
                module=model, optimizer=optimizer, data_loader=train_loader,
                noise_multiplier=config.noise_multiplier, max_grad_norm=config.max_grad_norm,
                noise_generator=noise_generator)
        return cls(config, engine, 1.0 / len(train_loader)), model, optimizer, train_loader

    _rdp_per_step: Dict[Tuple[float, float], np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def history(self) -> List[Tuple[float, float, int]]:
        """opacus' accounting history: (noise multiplier, sample rate, steps) entries."""
        return self.engine.accountant.history

    @property
    def steps(self) -> int:
        """DP-SGD steps taken so far."""
        return sum(entry[2] for entry in self.history)

    def epsilon_of(self, history: List[Tuple[float, float, int]]) -> float:
        """Epsilon at ``target_delta`` after ``history``, as opacus' RDP accountant computes it.

        RDP adds up over steps, so the per-step RDP of each (noise, sample rate) is computed once and
        scaled (opacus recomputes it from scratch, which takes about a second per call).
        """
        from opacus.accountants import RDPAccountant
        from opacus.accountants.analysis import rdp as analysis

        if not history:
            return 0.0
        orders = RDPAccountant.DEFAULT_ALPHAS
        total = 0.0
        for noise_multiplier, sample_rate, steps in history:
            key = (float(noise_multiplier), float(sample_rate))
            if key not in self._rdp_per_step:
                self._rdp_per_step[key] = np.asarray(analysis.compute_rdp(
                    q=sample_rate, noise_multiplier=noise_multiplier, steps=1, orders=orders))
            total = total + self._rdp_per_step[key] * steps
        epsilon, _ = analysis.get_privacy_spent(orders=orders, rdp=total, delta=self.config.target_delta)
        return float(epsilon)

    def consumed_epsilon(self) -> float:
        return self.epsilon_of(self.history)

    def predicted_epsilon(self, extra_steps: int) -> float:
        """The epsilon the accountant would report after ``extra_steps`` more steps (nothing is spent)."""
        planned = [(self.config.noise_multiplier, self.sample_rate, int(extra_steps))] if extra_steps > 0 else []
        return self.epsilon_of(copy.deepcopy(self.history) + planned)

    def would_exceed(self, extra_steps: int) -> bool:
        return self.predicted_epsilon(extra_steps) > self.config.target_epsilon

    def budget(self) -> DiffPrivBudget:
        spent = self.consumed_epsilon()
        return DiffPrivBudget(target_epsilon=self.config.target_epsilon, target_delta=self.config.target_delta,
                              consumed_epsilon=spent, consumed_delta=self.config.target_delta if self.steps else 0.0)


@contextlib.contextmanager
def quiet_opacus():
    """Silence opacus' and torch's known-harmless warnings during DP training.

    "Secure RNG turned off": colearn seeds its noise for reproducibility (documented; not for production
    secrets). "Full backward hook is firing ... no inputs require gradients": opacus' per-sample hooks on
    a first layer whose inputs are data.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        yield


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The user's module inside opacus' ``GradSampleModule`` (whose state dict keys carry ``_module.``)."""
    inner = getattr(model, "_module", None)
    return inner if isinstance(inner, torch.nn.Module) else model
