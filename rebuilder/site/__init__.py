"""Render the static site: HTML pages, rebuilderd's v0 and v1 API files, our JSON, feeds,
badges.

:func:`render` is the stage the pipeline calls after the state is saved. It reads
:class:`ProfileView` values (a profile, its records and pass history) and the results
store (``<site_dir>/builds/``, written by the build runner), and writes everything else
under ``site_dir``; see :mod:`rebuilder.site.paths` for the layout. The results store
is read, never written: every write goes through :class:`~rebuilder.site.output.Output`,
which refuses any path under ``builds/``.

The modules, in the order a render uses them: :mod:`~rebuilder.site.render` (the
driver), :mod:`~rebuilder.site.walk` (the one walk over the records),
:mod:`~rebuilder.site.groups` (group pages and build files, forked when many),
:mod:`~rebuilder.site.suites` (suite lists) and :mod:`~rebuilder.site.aggregates`
(v0/v1 trees, maintainers, feeds, badges, dashboard); the formats they write are in
:mod:`~rebuilder.site.api_v0`, :mod:`~rebuilder.site.api_v1`, :mod:`~rebuilder.site.html`,
:mod:`~rebuilder.site.feeds`, :mod:`~rebuilder.site.badges` and :mod:`~rebuilder.site.search`.
"""

from rebuilder.site.output import MAX_SERVED, RenderStats
from rebuilder.site.paths import SiteError
from rebuilder.site.render import render
from rebuilder.site.walk import ProfileView

__all__ = ["MAX_SERVED", "ProfileView", "RenderStats", "SiteError", "render"]
