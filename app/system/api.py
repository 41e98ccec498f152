"""Health: is the app up and can it reach its database."""

import marshmallow as ma
from flask.views import MethodView
from sqlalchemy import text

from app.core.api import Blueprint
from app.core.db import session

blp = Blueprint("system", __name__, url_prefix="/v1", description="Service health.")


class HealthSchema(ma.Schema):
    status = ma.fields.String(required=True)
    database = ma.fields.String(required=True)


@blp.route("/health")
class Health(MethodView):
    @blp.response(200, HealthSchema)
    def get(self):
        """Is the service up? Anyone may call it."""
        s = session()
        s.execute(text("SELECT 1"))
        return {"status": "ok", "database": s.get_bind().dialect.name}
