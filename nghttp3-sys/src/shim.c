#include "shim.h"

void nghttp3_sys_settings_default(nghttp3_settings *settings) {
  nghttp3_settings_default(settings);
}

int nghttp3_sys_conn_client_new(nghttp3_conn **pconn, const nghttp3_callbacks *callbacks,
                                const nghttp3_settings *settings, const nghttp3_mem *mem,
                                void *conn_user_data) {
  return nghttp3_conn_client_new(pconn, callbacks, settings, mem, conn_user_data);
}

int nghttp3_sys_conn_server_new(nghttp3_conn **pconn, const nghttp3_callbacks *callbacks,
                                const nghttp3_settings *settings, const nghttp3_mem *mem,
                                void *conn_user_data) {
  return nghttp3_conn_server_new(pconn, callbacks, settings, mem, conn_user_data);
}

int nghttp3_sys_conn_set_server_stream_priority(nghttp3_conn *conn, int64_t stream_id,
                                                const nghttp3_pri *pri) {
  return nghttp3_conn_set_server_stream_priority(conn, stream_id, pri);
}

int nghttp3_sys_conn_get_stream_priority(nghttp3_conn *conn, nghttp3_pri *dest,
                                         int64_t stream_id) {
  return nghttp3_conn_get_stream_priority(conn, dest, stream_id);
}

#ifdef nghttp3_conn_get_stream_priority2
int nghttp3_sys_conn_get_stream_priority2(const nghttp3_conn *conn, nghttp3_pri *dest,
                                          int64_t stream_id) {
  return nghttp3_conn_get_stream_priority2(conn, dest, stream_id);
}
#endif

int nghttp3_sys_pri_parse_priority(nghttp3_pri *dest, const uint8_t *value, size_t len) {
  return nghttp3_pri_parse_priority(dest, value, len);
}
