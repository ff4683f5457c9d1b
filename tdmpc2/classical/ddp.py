"""DDP, as implemented here: iLQG with the full cost Hessian instead of Gauss-Newton.

Classical DDP (Mayne 1966) also carries the second derivatives of the dynamics (a tensor
f_xx of size n^3 per step). Those are not computed: finite differences of whole MuJoCo agent
steps are too noisy at second order to help, and too costly (n^2 rollouts per step). What
distinguishes this solver from `iLQG` is the cost model: l_xx, l_uu, l_ux are central finite
differences of the cost itself, so non-convex costs (e.g. the curvature of a smooth-abs norm
away from zero, of cos(angle) residuals) are kept. The Hessians can then be indefinite; the
bounded Levenberg-Marquardt schedule and the box QP's positive-definiteness check handle that.
"""
from __future__ import annotations

from tdmpc2.classical.ilqg import iLQG


class DDP(iLQG):
    """iLQG with exact (finite-difference) cost Hessians; same arguments as `iLQG`."""

    full_hessian = True
