from .sources import load_source  # noqa: F401
from .split import SemiData, make_semidata  # noqa: F401
from .types import Source, Split  # noqa: F401
from .views import ViewMaker, view_maker_for  # noqa: F401
