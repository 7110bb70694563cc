"""Solver settings of every numerical fit, stated once (no imports: the regression reads them
without loading numpy, so `explore --help` stays fast).

SOLVER_TOL is the relative tolerance on the cost and on the scaled parameter step; at
convergence predictions then agree to about sqrt(SOLVER_TOL) = 1e-6 relative or better,
whatever the BLAS build or the starting point (PREDICTION_RTOL). The regression's tolerance on
fit results (cli/regress.py) is tied to it."""

SOLVER_TOL = 1e-12
MAX_EVALUATIONS = 5000
PREDICTION_RTOL = 1e-6
