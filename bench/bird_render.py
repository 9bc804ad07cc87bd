"""BIRD config render/validate figures (see vppagent/bgp/bench.py)."""

from vppagent.bgp.bench import main

if __name__ == "__main__":
    main()
