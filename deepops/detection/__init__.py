"""Detection and counting of cell nuclei: training targets and data (``data``), decoding (``decode``), metrics
(``metrics``), tiled inference on large images (``tiling``) and evaluation reports (``evaluate``)."""
