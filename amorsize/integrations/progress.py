"""The progress bar, under its integrations name (it lives in amorsize.progress)."""

from amorsize.progress import INSTALL_HINT, ProgressBarHook

__all__ = ["INSTALL_HINT", "ProgressBarHook"]
