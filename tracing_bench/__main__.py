"""``python -m tracing_bench`` = the ``tracing-bench`` command (handy under ``accelerate launch -m``)."""

from tracing_bench.cli import main

if __name__ == "__main__":
    main()
