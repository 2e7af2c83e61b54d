"""osteo: opportunistic osteoporosis screening from knee X-rays and clinical risk factors.

The package stands on floors that import only downward (ARCHITECTURE.md; `.importlinter` checks them).
"""

__version__ = "0.1.0"
