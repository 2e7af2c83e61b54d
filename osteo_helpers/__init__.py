"""osteo: opportunistic osteoporosis screening from knee X-rays and clinical risk factors."""

__version__ = "0.1.0"
