"""Real data and real trained networks that installed packages ship, for benchmarks and tests.

Nothing is downloaded: each source names the package that carries it, and a clear error says
what to install when it is missing.
"""
