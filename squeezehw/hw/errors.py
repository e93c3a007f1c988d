"""Errors raised while building hardware blocks (all are user-fixable, see squeezehw.errors)."""

from ..errors import UserError


class FoldingError(UserError):
    """A folding factor (PE, SIMD, lanes) does not fit the layer it was given for.

    The message names the layer, the bad factor and the valid choices.
    """
