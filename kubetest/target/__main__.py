"""``python -m kubetest.target``: the reference target in the foreground (see ``server``)."""

from kubetest.target.command import main

if __name__ == "__main__":
    raise SystemExit(main())
