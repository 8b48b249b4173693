"""huntaze: AI-written creator message campaigns with hybrid routing and an exact cost ledger."""

__version__ = "0.1.0"
