/*
 * nghttp3's versioned constructors and priority helpers are function-like macros that
 * pass the header's struct version constants (NGHTTP3_SETTINGS_VERSION, ...). bindgen
 * cannot see macros, so each one is expanded here, exactly as the header defines it,
 * in a real function. build.rs renames nghttp3_sys_X to nghttp3_X on the Rust side.
 */
#ifndef NGHTTP3_SYS_SHIM_H
#define NGHTTP3_SYS_SHIM_H

#include <nghttp3/nghttp3.h>

void nghttp3_sys_settings_default(nghttp3_settings *settings);

int nghttp3_sys_conn_client_new(nghttp3_conn **pconn, const nghttp3_callbacks *callbacks,
                                const nghttp3_settings *settings, const nghttp3_mem *mem,
                                void *conn_user_data);

int nghttp3_sys_conn_server_new(nghttp3_conn **pconn, const nghttp3_callbacks *callbacks,
                                const nghttp3_settings *settings, const nghttp3_mem *mem,
                                void *conn_user_data);

int nghttp3_sys_conn_set_server_stream_priority(nghttp3_conn *conn, int64_t stream_id,
                                                const nghttp3_pri *pri);

int nghttp3_sys_conn_get_stream_priority(nghttp3_conn *conn, nghttp3_pri *dest,
                                         int64_t stream_id);

#ifdef nghttp3_conn_get_stream_priority2
int nghttp3_sys_conn_get_stream_priority2(const nghttp3_conn *conn, nghttp3_pri *dest,
                                          int64_t stream_id);
#endif

int nghttp3_sys_pri_parse_priority(nghttp3_pri *dest, const uint8_t *value, size_t len);

#endif /* NGHTTP3_SYS_SHIM_H */
