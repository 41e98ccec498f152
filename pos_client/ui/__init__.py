"""The cashier's terminal screen (Textual): ``TillApp(till).run()``, or ``run_screen(config)``
as ``python -m pos_client`` with no command runs it."""

from pos_client.ui.app import TillApp


def run_screen(config) -> int:
    """The till with its hardware, event stream and replayer, on the screen until the cashier
    quits (Ctrl+Q on the sign-in screen)."""
    from pos_client.till import Till

    till = Till(config)
    till.start()
    try:
        TillApp(till).run()
    finally:
        till.stop()
    return 0


__all__ = ["TillApp", "run_screen"]
