"""The Flask extensions, as bare objects: each is bound to an app by its owner's init_app."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from flask_babel import Babel
from flask_login import LoginManager
from flask_mail import Mail
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import Table
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    """Declarative base shared by every model."""

    if TYPE_CHECKING:
        # Every model here maps one Table (SQLAlchemy types it as any FromClause).
        __table__: ClassVar[Table]


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
mail = Mail()
csrf = CSRFProtect()
login_manager = LoginManager()
babel = Babel()

# The models' base class. Flask-SQLAlchemy builds db.Model at run time (Base plus its
# table-name and query mixins), which mypy cannot see through; to mypy it is Base.
if TYPE_CHECKING:
    Model = Base
else:
    Model = db.Model
