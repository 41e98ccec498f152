"""Health: is the app up and can it reach its database."""

import marshmallow as ma
from flask.views import MethodView

from app.core.api import Blueprint
from app.core.db import session
from app.system import services as system

blp = Blueprint("system", __name__, url_prefix="/v1", description="Service health.")


class HealthSchema(ma.Schema):
    status = ma.fields.String(required=True)
    database = ma.fields.String(required=True)


@blp.route("/health")
class Health(MethodView):
    @blp.response(200, HealthSchema)
    def get(self):
        """Is the service up? Anyone may call it."""
        return {"status": "ok", "database": system.database_reached(session())}
