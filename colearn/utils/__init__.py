"""colearn 0.2.x helper modules, kept so that code written for it runs unchanged.

:mod:`colearn.utils.results` (``Result``, ``Results``, ``print_results``), :mod:`colearn.utils.plot`
(``ColearnPlot``) and :mod:`colearn.utils.data` (``split_list_into_fractions``, ``get_data``).
New code should use :mod:`colearn.results`, :mod:`colearn.plot` and :mod:`colearn.data` instead.
"""
