from app.core.errors import Conflict, NotFound


class ShiftOpen(Conflict):
    code = "shift_open"
    message = "This till has a shift open already: close it first."


class NoOpenShift(NotFound):
    code = "no_open_shift"
    message = "This till has no open shift."


class ShiftNotFound(NotFound):
    code = "shift_not_found"
    message = "No such shift at this till."


class ShiftClosed(Conflict):
    code = "shift_closed"
    message = "That shift is closed already."
