/* SPDX-License-Identifier: Apache-2.0 */
/*
 * layers.h - the layering rule as a compile error. meson forces this file
 * (-include) into every C file of every library: poisoning one name that
 * each outside library's header declares turns an include of that header
 * into "attempt to use poisoned" unless the library is allowed it.
 *
 *   DAGFS_LAYER_GIT    libgit2: sync/git/ only
 *   DAGFS_LAYER_CURL   libcurl: sync/s3/ (and a source that speaks HTTP)
 *   DAGFS_LAYER_EXPAT  expat: sync/s3/ only
 *   DAGFS_LAYER_FUSE   libfuse: fs/ and sidecar/ only
 *
 * It declares nothing; tests and fuzz targets are not held to it.
 */
#ifndef DAGFS_LAYERS_H
#define DAGFS_LAYERS_H

#ifndef DAGFS_LAYER_GIT
#pragma GCC poison git_libgit2_init
#endif
#ifndef DAGFS_LAYER_CURL
#pragma GCC poison curl_easy_init
#endif
#ifndef DAGFS_LAYER_EXPAT
#pragma GCC poison XML_ParserCreate
#endif
#ifndef DAGFS_LAYER_FUSE
#pragma GCC poison fuse_session_new
#endif

#endif
