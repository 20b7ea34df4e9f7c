"""The Label Studio side: its formats (label configs, brush RLE, polygons, annotations, predictions), its API client, images and publishing."""
