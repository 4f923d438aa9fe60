"""The secure operations DistAIM's compute servers run under MPyC, in one import.

Re-exports the public API of :mod:`secure_scoring` (L1 scores from bits with comparisons priced
by the public value, once-per-contributor-set bit decomposition, baselines), :mod:`secure_l2`
(L2 distances), :mod:`secure_em` (Gumbel-max exponential mechanism and the
report-noisy-max option) and :mod:`secure_noise` (distributed Gaussian measurement).
"""

from flaimsim.parties.mpc.secure_em import (SecureMechanismError, em_fxp_type, em_scale, noise_fxp,
                                        secure_em_index, secure_exponential_mechanism,
                                        secure_exponential_mechanism_batch, secure_gumbel,
                                        secure_report_noisy_max)
from flaimsim.parties.mpc.secure_noise import (NoisyMeasurement, SecureNoiseError, added_variance,
                                           secure_gaussian_measure, share_std)
from flaimsim.parties.mpc.secure_l2 import secure_l2_distances, secure_sqrt, sum_squares
from flaimsim.parties.mpc.secure_scoring import (SecretBits, SecureScoringError, comparison_plan,
                                             count_secint, decompose_counts, less_than_pieces,
                                             round_public_marginal, score_bound,
                                             secure_abs_diff_bits, secure_l1_bits,
                                             secure_l1_bits_full, secure_l1_naive,
                                             secure_scores_bits)

__all__ = [
    "NoisyMeasurement", "SecretBits", "SecureMechanismError", "SecureNoiseError",
    "SecureScoringError", "added_variance", "count_secint", "decompose_counts", "em_fxp_type",
    "em_scale", "noise_fxp", "round_public_marginal", "score_bound", "secure_abs_diff_bits",
    "secure_em_index", "secure_exponential_mechanism", "secure_exponential_mechanism_batch",
    "secure_gaussian_measure", "secure_gumbel", "secure_l1_bits", "secure_l1_naive",
    "secure_report_noisy_max", "secure_scores_bits", "share_std", "comparison_plan",
    "less_than_pieces", "secure_l1_bits_full", "secure_l2_distances", "secure_sqrt",
    "sum_squares",
]
