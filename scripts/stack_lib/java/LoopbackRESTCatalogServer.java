/*
 * Starts the Iceberg REST catalog test server (iceberg-open-api 1.10.1 fat jar)
 * on one address only. The jar's own main binds 0.0.0.0 with SO_REUSEPORT and
 * logs every catalog property, S3 secret included. This launcher does the same
 * setup as RESTCatalogServer.initializeBackendCatalog()/start(), except that:
 *   - Jetty listens on MOZART_REST_BIND_HOST (default 127.0.0.1) only,
 *   - SO_REUSEPORT stays off, so a second server cannot share the port,
 *   - the properties are logged with secret values masked.
 * It lives in the jar's package to reach its package-private classes.
 * scripts/stack compiles it with javac into .cache/ and runs it with -cp.
 */
package org.apache.iceberg.rest;

import java.util.Map;
import java.util.TreeMap;
import org.apache.hadoop.conf.Configuration;
import org.apache.iceberg.CatalogProperties;
import org.apache.iceberg.CatalogUtil;
import org.apache.iceberg.catalog.Catalog;
import org.apache.iceberg.jdbc.JdbcCatalog;
import org.apache.iceberg.relocated.com.google.common.collect.Maps;
import org.apache.iceberg.util.PropertyUtil;
import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.server.ServerConnector;
import org.eclipse.jetty.server.handler.gzip.GzipHandler;
import org.eclipse.jetty.servlet.ServletContextHandler;
import org.eclipse.jetty.servlet.ServletHolder;

public final class LoopbackRESTCatalogServer {
  private LoopbackRESTCatalogServer() {}

  public static void main(String[] args) throws Exception {
    Map<String, String> props = Maps.newHashMap(RCKUtils.environmentCatalogConfig());
    props.putIfAbsent(CatalogProperties.CATALOG_IMPL, JdbcCatalog.class.getName());
    props.putIfAbsent(CatalogProperties.URI, "jdbc:sqlite::memory:");
    props.putIfAbsent("jdbc.schema-version", "V1");
    if (props.get(CatalogProperties.WAREHOUSE_LOCATION) == null) {
      throw new IllegalArgumentException("CATALOG_WAREHOUSE must be set");
    }
    String name = PropertyUtil.propertyAsString(props, "catalog.name", "rest_backend");
    System.out.println("Creating catalog " + name + " with properties " + masked(props));

    Catalog catalog = CatalogUtil.buildIcebergCatalog(name, props, new Configuration());
    RESTCatalogServer.CatalogContext context = new RESTCatalogServer.CatalogContext(catalog, props);

    ServletContextHandler handler = new ServletContextHandler(ServletContextHandler.NO_SESSIONS);
    handler.addServlet(
        new ServletHolder(new RESTCatalogServlet(new RESTServerCatalogAdapter(context))), "/*");
    handler.insertHandler(new GzipHandler());

    Server server = new Server();
    ServerConnector connector = new ServerConnector(server);
    connector.setHost(System.getenv().getOrDefault("MOZART_REST_BIND_HOST", "127.0.0.1"));
    connector.setPort(PropertyUtil.propertyAsInt(props, "rest.port", 8181));
    server.addConnector(connector);
    server.setHandler(handler);
    server.setStopAtShutdown(true);
    server.start();
    System.out.println("REST catalog listening on " + connector.getHost() + ":" + connector.getLocalPort());
    server.join();
  }

  private static Map<String, String> masked(Map<String, String> props) {
    Map<String, String> out = new TreeMap<>();
    props.forEach(
        (key, value) -> {
          String lower = key.toLowerCase();
          boolean secret = lower.contains("secret") || lower.contains("password") || lower.contains("token");
          out.put(key, secret ? "****" : value);
        });
    return out;
  }
}
