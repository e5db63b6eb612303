"""rfcx-kit."""

# Before anything imports torch or numpy: RFCX_KIT_NUMERICS=portable pins their CPU kernels (core/numerics.py).
from rfcx_kit.core import numerics as _numerics

_numerics.apply_at_import()
