"""The cashier's terminal screen (Textual): ``TillApp(till).run()``."""

from pos_client.ui.app import TillApp

__all__ = ["TillApp"]
